"""The GPU measurements of issue 12, run by ``bench/gpu_run.sh`` on a CUDA machine.

    python -m bench.gpu_bench all --data .gpu --out $OUT

- ``mfu``: a ~91 M-parameter GPT (12 layers, d=768, 12 heads, 4 K/V heads, 8,192 vocab,
  seq 1024) trained by the bundled trainer in bf16 with ``torch.compile`` and fused AdamW;
  tokens/s and MFU (against the GPU's dense bf16 peak) after warm-up; also ``--precision fp8``
  where the GPU supports it.
- ``ablation``: one seed pair at that scale — the same model on the raw and on the curated
  snapshot for the same tokens; final held-out loss of each on the prose eval set.
- ``minhash``: ``cuda_ext.minhash`` vs the numba kernel on one CPU core on the same documents:
  bit-identical check, kernel-only time (CUDA events), end-to-end time (CPU shingling
  included), docs/s.

Writes one JSON file per part into OUT. Nothing here has been run yet: no GPU was available
to the session that wrote it (see docs/BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import gzip
import json
import time
from pathlib import Path
from typing import Any

BIG = dict(n_layer=12, n_head=12, n_kv_head=4, d_model=768)
# --smoke: the same code paths on the CPU with a tiny model (checks the script, measures nothing)
SMOKE = {
    "model": dict(n_layer=1, n_head=2, n_kv_head=1, d_model=32),
    "seq_len": 64,
    "batch_size": 2,
    "device": "cpu",
    "compile": False,
}
RUN = {"model": BIG, "seq_len": 1024, "batch_size": 32, "device": "cuda", "compile": True}


def part_mfu(data: Path, out: Path, steps: int, precision: str) -> dict[str, Any]:
    from trainer_bridge.trainer import TrainConfig, Trainer

    cfg = TrainConfig(
        snapshot=str(data / "curated"),
        out_dir=str(out / f"mfu_{precision}"),
        tokenizer=str(data / "tokenizer"),
        model=RUN["model"],
        seq_len=RUN["seq_len"],
        batch_size=RUN["batch_size"],
        max_steps=steps,
        warmup_steps=10,
        log_every=10,
        device=RUN["device"],
        compile=RUN["compile"],
        precision=precision,
        num_workers=2,
    )
    tr = Trainer(cfg)
    import torch

    tr.run(stop_at=min(10, steps // 2))  # compile + warm-up, not timed
    t0, tok0 = time.perf_counter(), tr.step * tr.tokens_per_step
    r = tr.run()
    if RUN["device"] == "cuda":
        torch.cuda.synchronize()
    secs = time.perf_counter() - t0
    tps = (tr.step * tr.tokens_per_step - tok0) / secs
    from trainer_bridge.trainer import mfu, peak_flops

    gpu = torch.cuda.get_device_name() if RUN["device"] == "cuda" else "cpu (smoke)"
    peak = peak_flops(gpu)
    return {
        "precision": precision,
        "gpu": gpu,
        "params": r["params"],
        "tokens_per_s": tps,
        "flops_per_token": tr.model.flops_per_token(cfg.seq_len),
        "mfu_vs_bf16_peak": mfu(tps, tr.model.flops_per_token(cfg.seq_len), peak) if peak else None,
        "final_loss": r["loss"][-1],
    }


def part_ablation(data: Path, out: Path, tokens: int, seed: int) -> dict[str, Any]:
    from trainer_bridge.trainer import TrainConfig, train

    res: dict[str, Any] = {"tokens": tokens, "seed": seed}
    for arm in ("raw", "curated"):
        r = train(
            TrainConfig(
                snapshot=str(data / arm),
                out_dir=str(out / f"abl_{arm}_s{seed}"),
                tokenizer=str(data / "tokenizer"),
                model=RUN["model"],
                seq_len=RUN["seq_len"],
                batch_size=RUN["batch_size"],
                max_tokens=tokens,
                warmup_steps=2,
                log_every=50,
                device=RUN["device"],
                seed=seed,
                eval_path=str(data / "eval.jsonl"),
                eval_every=max(1, tokens // (RUN["batch_size"] * RUN["seq_len"]) // 8),
                eval_seqs=64,
            )
        )
        res[arm] = {
            "eval_tokens": r["eval_tokens"],
            "eval_loss": r["eval_loss"],
            "tokens_per_s": r["tokens_per_s"],
        }
    res["final_gap_curated_minus_raw"] = (
        res["curated"]["eval_loss"][-1] - res["raw"]["eval_loss"][-1]
    )
    return res


def part_minhash(data: Path, repeat: int) -> dict[str, Any]:
    import cupy
    import numpy as np
    import pyarrow as pa

    from cuda_ext import minhash as cm
    from dedup import signature as sig

    with gzip.open(data / "minhash_docs.jsonl.gz", "rt", encoding="utf-8") as fh:
        texts = [json.loads(line)["text"] for line in fh] * repeat
    arr = pa.array(texts, pa.large_string())
    sig.warm_up()
    t0 = time.perf_counter()
    cpu = sig.signatures_and_sets(arr)
    cpu_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    flat, offs = sig.shingle_hashes(arr)
    shingle_s = time.perf_counter() - t0
    cm.signatures_device(flat[:1000], offs[:2])  # compile (NVRTC) + warm-up, not timed
    d_flat = cupy.asarray(flat)
    start, end = cupy.cuda.Event(), cupy.cuda.Event()
    start.record()
    d_sig = cm.signatures_device(flat, offs)
    end.record()
    end.synchronize()
    kernel_s = cupy.cuda.get_elapsed_time(start, end) / 1e3
    t0 = time.perf_counter()
    gpu = cm.signatures_and_sets(arr, device="cuda")
    e2e_s = time.perf_counter() - t0
    same = all(np.array_equal(x, y) for x, y in zip(gpu, cpu, strict=True))
    del d_flat, d_sig
    return {
        "docs": len(texts),
        "shingles": int(flat.size),
        "bit_identical": bool(same),
        "cpu_numba_one_core_s": cpu_s,
        "cpu_shingling_s": shingle_s,
        "gpu_kernel_s (incl. H2D of shingles)": kernel_s,
        "gpu_end_to_end_s": e2e_s,
        "kernel_speedup_vs_one_core": cpu_s / kernel_s,
        "end_to_end_speedup": cpu_s / e2e_s,
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["all", "mfu", "ablation", "minhash"])
    ap.add_argument("--data", default=".gpu")
    ap.add_argument("--out", required=True)
    ap.add_argument("--mfu-steps", type=int, default=60)
    ap.add_argument("--ablation-tokens", type=int, default=20_000_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--minhash-repeat", type=int, default=20)
    ap.add_argument("--smoke", action="store_true", help="tiny model on the CPU: checks the script")
    a = ap.parse_args(argv)
    if a.smoke:
        RUN.update(SMOKE)
    data, out = Path(a.data), Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path("/tmp/assay_gpu")
    todo = ["minhash", "mfu", "ablation"] if a.what == "all" else [a.what]
    for part in todo:
        t0 = time.perf_counter()
        try:
            if part == "mfu":
                res: Any = [part_mfu(data, work, a.mfu_steps, "bf16")]
                from trainer_bridge.fp8 import fp8_supported

                if RUN["device"] == "cuda" and fp8_supported("cuda")[0]:
                    res.append(part_mfu(data, work, a.mfu_steps, "fp8"))
            elif part == "ablation":
                res = part_ablation(data, work, a.ablation_tokens, a.seed)
            else:
                res = part_minhash(data, a.minhash_repeat)
        except Exception as e:  # noqa: BLE001 - record the failure, go on to the next part
            res = {"error": f"{type(e).__name__}: {e}"}
        res_doc = {"part": part, "seconds": time.perf_counter() - t0, "result": res}
        (out / f"gpu_{part}.json").write_text(json.dumps(res_doc, indent=1) + "\n")
        print(json.dumps(res_doc), flush=True)


if __name__ == "__main__":
    main()
