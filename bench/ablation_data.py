"""Prepare the inputs of the real curated-vs-raw ablation (see docs/benchmarks/ablation.md).

    nice .venv/bin/python -m bench.ablation_data --out /tmp/ablation

Writes under OUT:

- ``eval.jsonl``: the held-out eval set = the label-1 (well-written prose) items of
  ``quality_train.jsonl.zst`` that fall in the classifier's held-out split
  (``classifiers.data.holdout_mask(texts, 0.2, seed=0)``, the split `assay classifier train
  fasttext --holdout 0.2 --seed 0` uses), so the quality classifier never saw them either.
  Rows are in a fixed hash order so that the first ``--eval-seqs`` sequences the ablation packs
  cover many documents rather than the first few long ones.
- ``raw_in/part-0000K.jsonl`` (K < --shards): every ``pretrain_raw`` doc that shares no
  13-word shingle (lowercased, whitespace-split) with any eval doc, dealt round-robin into
  shards. Both the RAW and the CURATED snapshot are built from these files, so both runs train
  on the same decontaminated pool.
- ``contaminated.jsonl``: id, source, kind and the number of shared shingles of every removed
  doc; ``prep.json``: the counts.
"""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import xxhash
import zstandard

from classifiers.data import holdout_mask, read_labelled

DATA = Path("/work/shared/data")


def shingles(text: str, n: int) -> set[int]:
    words = text.lower().split()
    return {
        xxhash.xxh64_intdigest(" ".join(words[i : i + n])) for i in range(len(words) - n + 1)
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="/tmp/ablation")
    ap.add_argument("--raw", default=str(DATA / "pretrain_raw.jsonl.zst"))
    ap.add_argument("--quality", default=str(DATA / "quality_train.jsonl.zst"))
    ap.add_argument("--holdout", type=float, default=0.2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ngram", type=int, default=13)
    ap.add_argument("--shards", type=int, default=8)
    a = ap.parse_args()
    out = Path(a.out)
    (out / "raw_in").mkdir(parents=True, exist_ok=True)

    # 1. eval set: held-out label-1 items of quality_train (same split as the classifier's)
    data = read_labelled(a.quality)
    mask = holdout_mask(data.texts, a.holdout, a.seed)
    ev = [t for t, lab, m in zip(data.texts, data.labels, mask) if m and lab == "1"]
    ev.sort(key=lambda t: xxhash.xxh64_intdigest(t, seed=123))
    with (out / "eval.jsonl").open("w") as fh:
        for t in ev:
            fh.write(json.dumps({"text": t, "label": 1}) + "\n")
    ev_sh: set[int] = set()
    for t in ev:
        ev_sh |= shingles(t, a.ngram)

    # 2. decontaminate pretrain_raw against the eval set, shard the rest
    outs = [(out / "raw_in" / f"part-{k:05d}.jsonl").open("w") for k in range(a.shards)]
    kept = removed = 0
    kept_chars = removed_chars = 0
    with (
        io.TextIOWrapper(
            zstandard.ZstdDecompressor().stream_reader(open(a.raw, "rb")), encoding="utf-8"
        ) as fh,
        (out / "contaminated.jsonl").open("w") as bad,
    ):
        for line in fh:
            if not line.strip():
                continue
            rec = json.loads(line)
            hit = len(shingles(rec["text"], a.ngram) & ev_sh)
            if hit:
                removed += 1
                removed_chars += len(rec["text"])
                bad.write(json.dumps({"id": rec["id"], "source": rec.get("source"),
                                      "kind": rec.get("kind"), "shared_shingles": hit}) + "\n")
                continue
            outs[kept % a.shards].write(line if line.endswith("\n") else line + "\n")
            kept += 1
            kept_chars += len(rec["text"])
    for f in outs:
        f.close()
    info = {
        "eval_docs": len(ev),
        "eval_chars": sum(map(len, ev)),
        "eval_shingles": len(ev_sh),
        "ngram": a.ngram,
        "raw_kept_docs": kept,
        "raw_kept_chars": kept_chars,
        "raw_removed_docs": removed,
        "raw_removed_chars": removed_chars,
        "shards": a.shards,
    }
    (out / "prep.json").write_text(json.dumps(info, indent=1) + "\n")
    print(json.dumps(info, indent=1))


if __name__ == "__main__":
    main()
