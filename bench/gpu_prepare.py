"""Prepare the carry-folder for ``bench/gpu_run.sh`` (run HERE, on the CPU machine).

    PYTHONPATH=. .venv/bin/python -m bench.gpu_prepare --out .gpu \\
        --raw /tmp/model_kd/raw_in --curated /tmp/model_kd/snap_curated \\
        --eval /tmp/model_kd/eval.jsonl

The GPU machine has torch, numba, CuPy, pyarrow and tokenizers but not this project's other
dependencies and none of ``../shared``, so everything it reads is made here into OUT (kept
under ~40 MB so it travels with the working tree): ``raw/`` and ``curated/`` snapshots (the
raw one capped at --raw-mb of text, drawn from the same decontaminated pool as the curated
one), ``tokenizer/`` (8,192-token BPE trained on the curated snapshot), ``eval.jsonl`` (the
held-out prose set) and ``minhash_docs.jsonl.gz`` (real documents for the kernel benchmark).
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
from pathlib import Path

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=".gpu")
    ap.add_argument("--raw", required=True, help="folder of raw JSONL shards (bench.ablation_data)")
    ap.add_argument("--curated", required=True, help="curated snapshot folder")
    ap.add_argument("--eval", required=True)
    ap.add_argument("--raw-mb", type=float, default=20.0)
    ap.add_argument("--minhash-docs", type=int, default=10000)
    a = ap.parse_args(argv)

    from curriculum.snapshot_io import read_jsonl_texts, table_from_records, write_snapshot
    from trainer_bridge.tokenizer import train_tokenizer

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    recs, chars = [], 0
    for f in sorted(Path(a.raw).glob("*.jsonl")):
        for r in read_jsonl_texts(f):
            recs.append(r)
            chars += len(r["text"])
            if chars >= a.raw_mb * 1e6:
                break
        if chars >= a.raw_mb * 1e6:
            break
    table = table_from_records(recs, source_default="pretrain_raw")
    step = -(-table.num_rows // 2)
    if (out / "raw").exists():
        shutil.rmtree(out / "raw")
    write_snapshot(
        out / "raw", [(f"s{i}", table.slice(i * step, step)) for i in range(2)], name="gpu-raw"
    )
    if (out / "curated").exists():
        shutil.rmtree(out / "curated")
    shutil.copytree(a.curated, out / "curated", ignore=shutil.ignore_patterns("_work", "state"))
    shutil.rmtree(out / "curated" / "tokenizer", ignore_errors=True)
    train_tokenizer(out / "curated", out / "tokenizer", vocab_size=8192)
    shutil.copy(a.eval, out / "eval.jsonl")
    docs = read_jsonl_texts(DATA / "pretrain_raw.jsonl.zst", limit=a.minhash_docs)
    with gzip.open(out / "minhash_docs.jsonl.gz", "wt", encoding="utf-8") as fh:
        for d in docs:
            fh.write(json.dumps({"text": d["text"][:3000]}) + "\n")
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"{out}: {size / 1e6:.1f} MB, raw {table.num_rows} docs / {chars / 1e6:.1f} M chars")


if __name__ == "__main__":
    main()
