"""What a run of the lever ablation actually trains on: pool coverage and quality mix per arm.

    assay bench curriculum_mix --prep /tmp/abl --arms raw,curriculum --seeds 0,1,2,3,4

For each arm and seed this replays the run's loader exactly as the ablation builds it (same
seed, T, B, budget, shuffle, and ``phase_budget`` for curriculum snapshots), without training,
and reports: the distinct documents the budget's sequences start in, and the share of the
budget's tokens that come from the *anneal* documents of the curriculum snapshot (its
best-scored 10 % of tokens), overall and in the last 10 % of the run. If the curriculum arm
differs from raw only in order, both arms draw about 10 % of their tokens from those documents
and about as many distinct documents; only the position of those tokens differs (raw: spread
over the run; curriculum: all in the last 10 %).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np


def doc_ids(snapshot: str) -> list[str]:
    """Doc ids in token-cache order (the manifest's shard order, rows in file order)."""
    import pyarrow.parquet as pq

    from trainer_bridge.snapshot import read_manifest, shard_files

    m = read_manifest(snapshot)
    return [d for f in shard_files(snapshot, m, verify=False)
            for d in pq.read_table(f, columns=["doc_id"]).column(0).to_pylist()]


def replay(snapshot: str, tokenizer: str, seed: int, budget: int, seq_len: int, batch_size: int,
           phased: bool, anneal_ids: set[str]) -> dict[str, Any]:
    from trainer_bridge.loader import ShardLoader

    ld = ShardLoader(snapshot, tokenizer, seq_len=seq_len, batch_size=batch_size, seed=seed,
                     shuffle_buffer=0, phase_budget=budget if phased else None)
    ids = doc_ids(snapshot)
    is_anneal = np.array([d in anneal_ids for d in ids])
    order, ends = ld._epoch(0)
    starts = ends - np.diff(ld.cache.offsets)[order]
    n_pos = budget // seq_len
    tail = int(round(0.9 * n_pos))
    docs: set[int] = set()
    anneal_tokens = np.zeros(n_pos)
    for p in range(n_pos):
        s = ld.sequence_at(0, p)
        a, b = s * seq_len + 1, s * seq_len + seq_len + 1  # the label tokens of the sequence
        d0 = int(np.searchsorted(ends, a, side="right"))
        d1 = int(np.searchsorted(ends, b - 1, side="right"))
        for d in range(d0, d1 + 1):
            doc = int(order[d])
            docs.add(doc)
            if is_anneal[doc]:
                lo, hi = max(a, int(starts[d])), min(b, int(ends[d]))
                anneal_tokens[p] += max(0, hi - lo)
    return {
        "distinct_docs": len(docs),
        "anneal_token_share": float(anneal_tokens.sum() / (n_pos * seq_len)),
        "anneal_token_share_last_10pct": float(anneal_tokens[tail:].sum()
                                               / ((n_pos - tail) * seq_len)),
        "anneal_token_share_first_90pct": float(anneal_tokens[:tail].sum() / (tail * seq_len)),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prep", default="/tmp/abl")
    ap.add_argument("--arms", default="raw,curriculum",
                    help="arms of --prep, or NAME=SNAPSHOT for a snapshot replayed without "
                    "phase_budget (e.g. the earlier budget-phased curriculum snapshot)")
    ap.add_argument("--reference", default="curriculum",
                    help="arm whose snapshot's anneal phase defines the 'best' documents")
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--tokens", type=int, default=307_200)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    import pyarrow.parquet as pq

    from trainer_bridge.snapshot import curriculum_phases, read_manifest, shard_files

    prep = Path(a.prep)
    ref = str(prep / f"snap_{a.reference}")
    m = read_manifest(ref)
    anneal_ids = {d for f in shard_files(ref, m, verify=False)
                  for t in [pq.read_table(f, columns=["doc_id", "phase"])]
                  for d, p in zip(t.column(0).to_pylist(), t.column(1).to_pylist(), strict=True)
                  if p == "anneal"}
    budget = a.tokens // (a.seq_len * a.batch_size) * a.seq_len * a.batch_size
    out: dict[str, Any] = {"reference": a.reference, "anneal_docs": len(anneal_ids),
                           "budget": budget, "arms": {}}
    for arm in a.arms.split(","):
        if "=" in arm:  # NAME=SNAPSHOT: replayed as the earlier ablation ran it (no phase_budget)
            arm, snap = arm.split("=", 1)
            phased = False
        else:
            snap = str(prep / f"snap_{arm}")
            phased = bool(curriculum_phases(read_manifest(snap)))
        rows = [replay(snap, str(prep / "tokenizer"), int(s), budget, a.seq_len, a.batch_size,
                       phased, anneal_ids) for s in a.seeds.split(",")]
        out["arms"][arm] = {"phased_in_loader": phased, "per_seed": rows,
                            **{k: float(np.mean([r[k] for r in rows])) for k in rows[0]}}
        r = out["arms"][arm]
        print(f"{arm:>11}: {r['distinct_docs']:.0f} docs, anneal-doc tokens "
              f"{r['anneal_token_share']:.3f} (first 90 % {r['anneal_token_share_first_90pct']:.3f}, "
              f"last 10 % {r['anneal_token_share_last_10pct']:.3f})", flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1) + "\n")
    return out


if __name__ == "__main__":
    main()
