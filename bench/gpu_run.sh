#!/usr/bin/env bash
# The one prepared GPU run of issue 12 (not yet run: no GPU was lent to the session that wrote it).
#
# Here (CPU machine), once:
#   PYTHONPATH=. .venv/bin/python -m bench.gpu_prepare --out .gpu --raw /tmp/model_kd/raw_in \
#       --curated /tmp/model_kd/snap_curated --eval /tmp/model_kd/eval.jsonl
# Then on the GPU machine (device tool: carry [".gpu"], timeout_s 600):
#   bash bench/gpu_run.sh
# Measures: the CUDA MinHash kernel's bit-identity (pytest -m gpu) and speed vs one CPU core;
# MFU of a ~91M-parameter GPT in bf16 (+ fp8 where supported); one raw/curated seed pair at that
# scale. Results: $OUT/gpu_*.json (copy the figures into docs/BENCHMARKS.md with this command).
set -uo pipefail
OUT=${OUT:-/tmp/gpu_out}
mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 NUMBA_CACHE_DIR=/tmp/numba_cache
PY=${PY:-python3}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
$PY -c "import torch, cupy; print('torch', torch.__version__, torch.cuda.get_device_name(), 'cupy', cupy.__version__)" | tee -a "$OUT/gpu.txt"
timeout 150 $PY -m pytest -q -p no:cacheprovider -m gpu tests/cuda_ext/test_minhash_cuda.py \
    tests/trainer_bridge/test_gpu_path.py 2>&1 | tail -15 | tee "$OUT/pytest_gpu.txt"
timeout 400 $PY -m bench.gpu_bench all --data .gpu --out "$OUT" \
    --mfu-steps "${MFU_STEPS:-60}" --ablation-tokens "${ABL_TOKENS:-20000000}" 2>&1 | tail -40
