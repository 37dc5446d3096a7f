"""``dedup.minhash`` on real near-duplicate pages: two releases of the same manuals.

The corpus is ``neardup_versions.jsonl`` as written by the shared data recipe's
``build_neardup.py`` (``version_pairs``) from two Debian releases each of linux-doc-6.1
(6.1.170-3 / 6.1.192-2), postgresql-doc-15 (15.18 / 15.20) and python-django-doc
(3.2.25-0+deb12u3 / +deb12u7): every HTML page present in both releases, once per release.
It is not in the shared folder; rebuild it (see docs/benchmarks/dedup.md, "Two releases of the
same manuals") and pass its path with ``--data``.

Measured exactly as :mod:`bench.dedup` measures its corpus, with its functions: the neutral
exact-Jaccard ground truth (:mod:`bench.neutral_truth`: lower-cased ``\\w+`` word 5-grams,
independent of assay's code), doc-level precision /
recall / F1 for assay verified, assay ``--no-verify``, datasketch and rensa
(:func:`bench.dedup.run_ours`, :func:`bench.dedup.peer_quality`), and signature docs per
CPU-second (:func:`bench.dedup.signature_speed`).

``--field full_text`` (default) dedups all visible text of each page (version-stamped header and
sidebar included, so the release pairs are near-duplicates, rarely identical); ``--field text``
the content area only (most release pairs identical there).

``--max-bucket N`` passes ``max_bucket`` to ``dedup.minhash`` (default 64): with 256 it
reproduces the "split pairs" figure of docs/benchmarks/dedup.md (true pairs whose two docs
end in different clusters = (1 - pair recall) x pairs; candidates/checked from index.json).

Run: ``python -m bench.dedup_manuals --data /tmp/neardup_manuals/neardup_versions.jsonl.zst``
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bench.dedup import _read_zst, peer_quality, run_ours, signature_speed


def _records(path: Path) -> Iterator[dict[str, Any]]:
    if path.suffix == ".zst":
        yield from _read_zst(path)
    else:
        with open(path, encoding="utf-8") as f:
            for line in f:
                yield json.loads(line)


def load_manuals(path: Path, field: str = "full_text", kind: str = "release") -> pa.Table:
    """One row per page per release (``kind == "release"`` records; rustdoc re-exports left out).

    ``group`` = package + installed path: the two rows of a group are the same page in the two
    releases.
    """
    ids, texts, pkgs, groups = [], [], [], []
    for r in _records(path):
        if r.get("kind") != kind:
            continue
        ids.append(r["id"])
        texts.append(r[field])
        pkgs.append(r["source_pkg"])
        groups.append(r["group"])
    n = len(ids)
    return pa.table(
        {
            "doc_id": pa.array(ids, pa.string()),
            "text": pa.array(texts, pa.large_string()),
            "source": pa.array(pkgs, pa.string()),
            "url": pa.nulls(n, pa.string()),
            "group": pa.array(groups, pa.string()),
        }
    )


def pair_recall(work: Path, doc_ids: list[str], left: np.ndarray, right: np.ndarray) -> float:
    """Share of ground-truth pairs whose two docs ended in one cluster of a :func:`run_ours` run

    (read from the stage's own per-shard state ``state/shards/``; docs not listed there are singletons).
    """
    t = pq.read_table(work / "state" / "shards", columns=["doc_id", "dedup.cluster"])
    cl = dict(zip(t.column("doc_id").to_pylist(), t.column("dedup.cluster").to_pylist()))
    lab = np.array([cl.get(d, "\0" + d) for d in doc_ids], dtype=object)
    return float((lab[left] == lab[right]).mean()) if left.size else 1.0


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(
        prog="python -m bench.dedup_manuals", description=__doc__.split("\n")[0]
    )
    ap.add_argument(
        "--data", required=True, help="neardup_versions.jsonl[.zst] from build_neardup.py"
    )
    ap.add_argument("--field", default="full_text", choices=("full_text", "text"))
    ap.add_argument("--threshold", type=float, default=0.8)
    ap.add_argument(
        "--sig-sample", type=int, default=2000, help="docs timed for the peers' signatures"
    )
    ap.add_argument("--no-peer-quality", action="store_true", help="skip datasketch/rensa")
    ap.add_argument("--max-bucket", type=int, default=None,
                    help="dedup.minhash max_bucket (default: the stage's 64)")
    ap.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = ap.parse_args(argv)

    from bench import neutral_truth as nt

    table = load_manuals(Path(args.data), args.field)
    n = table.num_rows
    mb = sum(len(t.encode()) for t in table.column("text").to_pylist()) / 1e6
    src = np.array(table.column("source").to_pylist())
    grp = np.array(table.column("group").to_pylist())
    print(
        f"corpus: {n} docs ({len(set(grp.tolist()))} pages x 2 releases), {mb:.1f} MB, field {args.field}"
    )
    for s in sorted(set(src.tolist())):
        print(f"  {s:20s} {int((src == s).sum()):6d} docs")
    res: dict[str, Any] = {"docs": n, "mb": mb, "field": args.field, "threshold": args.threshold}

    t0 = time.perf_counter()
    sets = nt.shingle_sets(table.column("text").to_pylist())
    left, right, jac = nt.exact_pairs(sets, args.threshold)
    doc_metrics = nt.doc_metrics
    truth = nt.true_duplicate_docs(n, left, right)
    same = grp[left] == grp[right]
    # release pairs (same page, two releases) whatever their Jaccard, for the breakdown
    order = np.argsort(grp, kind="stable")
    a, b = order[0::2], order[1::2]
    pj = np.zeros(a.size)
    for k, (i, j) in enumerate(zip(a.tolist(), b.tolist())):
        x, y = sets[i], sets[j]
        inter = np.intersect1d(x, y, assume_unique=True).size
        pj[k] = inter / max(x.size + y.size - inter, 1)
    res["ground_truth"] = gt = {
        "pairs": int(left.size),
        "release_pairs": int(same.sum()),
        "cross_page_pairs": int((~same).sum()),
        "release_pairs_total": int(a.size),
        "release_pairs_below_threshold": int((pj < args.threshold).sum()),
        "release_pairs_identical_sets": int((pj == 1.0).sum()),
        "dup_docs": int(truth.sum()),
        "s": time.perf_counter() - t0,
    }
    print(
        f"neutral ground truth: {gt['pairs']} pairs at J >= {args.threshold} ({gt['release_pairs']} "
        f"same page across releases, {gt['cross_page_pairs']} between different pages), "
        f"{gt['dup_docs']} docs with a partner ({gt['s']:.1f} s)\n"
        f"  release pairs: {gt['release_pairs_total']}, identical shingle sets "
        f"{gt['release_pairs_identical_sets']}, J < {args.threshold}: "
        f"{gt['release_pairs_below_threshold']}; J quantiles q1/q10/q50 = "
        + "/".join(f"{q:.3f}" for q in np.quantile(pj, [0.01, 0.1, 0.5]))
    )

    res["signatures_docs_per_cpu_s"] = sp = signature_speed(table, args.sig_sample)
    print(
        f"\nsignatures, docs per CPU-second on {sp['sample_docs']} docs "
        f"(numba cache load {sp['numba_jit_s']:.2f} s, apart)"
    )
    for k in ("ours_numba", "ours_numpy_reference", "datasketch", "rensa"):
        v = sp[k]
        print(f"  {k:22s} {v}" if isinstance(v, str) else
              f"  {k:22s} {v:>12,.0f}   ours / this = {sp['ours_numba'] / v:.1f}x")

    quality: dict[str, Any] = {}
    masks: dict[str, np.ndarray] = {}
    with tempfile.TemporaryDirectory() as d:
        ids = table.column("doc_id").to_pylist()
        hard = (jac < 0.9) & same  # release pairs that really changed (0.8 <= J < 0.9)
        mb_cfg = {} if args.max_bucket is None else {"max_bucket": args.max_bucket}
        for name, kw in (("assay (verified)", dict(mb_cfg)),
                         ("assay --no-verify", {"verify": False, **mb_cfg})):
            w = Path(d) / name.split()[-1].strip("()-")
            r = run_ours(table, w, args.threshold, **kw)
            masks[name] = r["predicted"]
            quality[name] = doc_metrics(r["predicted"], truth) | {
                "wall_s": r["wall_s"],
                "pair_recall_all": pair_recall(w, ids, left, right),
                "pair_recall_release": pair_recall(w, ids, left[same], right[same]),
                "pair_recall_release_J_lt_0.9": pair_recall(w, ids, left[hard], right[hard]),
                "release_pairs_J_lt_0.9": int(hard.sum()),
            }
            res["ours_run" if kw.get("verify", True) else "ours_run_unverified"] = {
                k: v for k, v in r.items() if k != "predicted"
            }
    if not args.no_peer_quality:
        for name, r in peer_quality(table, args.threshold).items():
            if isinstance(r, str):  # not installed: say so, never drop the row silently
                print(f"  {name}: {r}")
                quality[name] = {"status": r}
                continue
            masks[name] = r["predicted"]
            quality[name] = doc_metrics(r["predicted"], truth) | {"wall_s": r["wall_s"]}
    # baseline: call every doc a duplicate (shows how saturated doc-level metrics are here)
    masks["flag every doc"] = np.ones(n, dtype=bool)
    quality["flag every doc"] = doc_metrics(masks["flag every doc"], truth) | {"wall_s": 0.0}
    for name, m in masks.items():  # which true duplicates each method missed, per package
        quality[name]["missed_by_source"] = {
            s: int((truth & ~m & (src == s)).sum()) for s in sorted(set(src.tolist()))
        }
        quality[name]["false_pos_by_source"] = {
            s: int((~truth & m & (src == s)).sum()) for s in sorted(set(src.tolist()))
        }
    res["quality"] = quality
    print(
        f"\ndoc-level quality at J >= {args.threshold} ({truth.sum()} true duplicate docs of {n})"
    )
    print(
        f"  {'method':20s} {'precision':>9s} {'recall':>7s} {'F1':>6s} {'pred':>6s} {'wall s':>7s}"
    )
    for k, q in quality.items():
        if "status" in q:
            print(f"  {k:20s} {q['status']}")
            continue
        print(
            f"  {k:20s} {q['precision']:9.4f} {q['recall']:7.4f} {q['f1']:6.4f} "
            f"{q['predicted']:6d} {q['wall_s']:7.1f}   missed {q['missed_by_source']} "
            f"FP {q['false_pos_by_source']}"
        )
    for k, q in quality.items():
        if "pair_recall_all" in q:
            print(
                f"  {k}: pair recall (both docs in one cluster) all true pairs "
                f"{q['pair_recall_all']:.4f}, release pairs {q['pair_recall_release']:.4f}, "
                f"release pairs with J < 0.9 ({q['release_pairs_J_lt_0.9']}) "
                f"{q['pair_recall_release_J_lt_0.9']:.4f}"
            )
    o = res["ours_run"]
    print(
        f"\nour whole run: {n} docs in {o['wall_s']:.1f} s wall / {o['cpu_s']:.1f} s CPU "
        f"(map {o['map_s']:.1f}, reduce {o['reduce_s']:.1f}); index.json: {json.dumps(o['info'])}"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2, default=float))
    return res


if __name__ == "__main__":
    main()
