"""`assay bench sketch_kernels`: SoftDedup's count-min kernels, blocked vs the per-gram loop.

``dedup.kernels.count`` / ``mean_log_count`` compute a block of grams' counter indices first
and then touch the counters in a tight loop, so the DRAM misses into the sketch (128 MB by
default) overlap. This runs them and the plain per-gram loop they replaced (written here, the
same hashes) over the same word ids in one process, alternating, and checks that both give the
same counters and the same bits. Words: the ``bench scale`` corpus (``pretrain_raw`` cut into
~200-word docs), as :func:`dedup.signature.word_ids` makes them for the map. CPU-seconds of
this process (``time.process_time``); the kernels are memory-bound, so other load on the
machine moves them: take the ratio of one run, and say the load.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench._common import add_out, bench_parser, write_json


def _direct_kernels():  # type: ignore[no-untyped-def]
    from dedup import kernels as kn
    from pipeline._numba_cache import numba_with_cache

    nb = numba_with_cache()

    @nb.njit
    def count_direct(words, offsets, n, table):  # type: ignore[no-untyped-def]
        mask, total = np.uint64(table.shape[1] - 1), 0
        for d in range(offsets.shape[0] - 1):
            for j in range(offsets[d + 1] - offsets[d] - n + 1):
                h = kn.gram_hash(words, offsets[d] + j, n)
                for r in range(table.shape[0]):
                    i = kn.row_index(h, r, mask)
                    if table[r, i] < 0xFFFFFFFF:
                        table[r, i] += 1
                total += 1
        return total

    @nb.njit
    def score_direct(words, offsets, n, table, k, out, grams):  # type: ignore[no-untyped-def]
        mask = np.uint64(table.shape[1] - 1)
        for d in range(offsets.shape[0] - 1):
            m = offsets[d + 1] - offsets[d] - n + 1
            acc = 0.0
            for j in range(m):
                h = kn.gram_hash(words, offsets[d] + j, n)
                c = table[0, kn.row_index(h, 0, mask)]
                for r in range(1, table.shape[0]):
                    c2 = table[r, kn.row_index(h, r, mask)]
                    if c2 < c:
                        c = c2
                acc += np.log(c + k)
            grams[d] = max(m, 0)
            out[d] = acc / m if m > 0 else np.nan

    return count_direct, score_direct


def word_batches(data: Path, docs: int, batch: int = 5000) -> list[tuple[np.ndarray, np.ndarray]]:
    import pyarrow as pa

    from bench.scale import chunks
    from bench._common import jsonl_zst_lines
    from dedup.signature import word_ids

    texts: list[str] = []
    for line in jsonl_zst_lines(data / "pretrain_raw.jsonl.zst"):
        texts.extend(chunks(json.loads(line)["text"]))
        if len(texts) >= docs:
            break
    out = []
    for s in range(0, min(docs, len(texts)), batch):
        flat, offsets = word_ids(pa.chunked_array([pa.array(texts[s : s + batch], pa.large_string())]))
        out.append((np.asarray(flat, dtype=np.uint32), np.asarray(offsets, dtype=np.int64)))
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = bench_parser("assay bench sketch_kernels", __doc__)
    ap.add_argument("--docs", type=int, default=168000, help="documents (bench scale's 1 -> 2 corpus: ~168k)")
    ap.add_argument("--width-log2", type=int, default=24, help="log2 counters per row (default: 2 x 2^24 = 128 MB)")
    ap.add_argument("--reps", type=int, default=2, help="alternating rounds")
    add_out(ap)
    args = ap.parse_args(argv)
    from dedup import kernels as kn

    count_direct, score_direct = _direct_kernels()
    batches = word_batches(args.data, args.docs)
    w0, o0 = batches[0]
    small = np.zeros((2, 1024), np.uint32)
    for fn in (kn.count, count_direct):  # compile / load outside the timers
        fn(w0, o0, 4, small)
    res: dict[str, Any] = {"docs": sum(len(o) - 1 for _, o in batches), "words": int(sum(len(w) for w, _ in batches)),
                           "load_before": " ".join(f"{x:.2f}" for x in os.getloadavg()), "rounds": []}
    for rep in range(args.reps):
        got: dict[str, Any] = {}
        tables = {}
        for name, fn in (("blocked", kn.count), ("per_gram", count_direct))[:: 1 if rep % 2 == 0 else -1]:
            t = np.zeros((2, 1 << args.width_log2), np.uint32)
            c0 = time.process_time()
            for w, o in batches:
                fn(w, o, 4, t)
            got[f"count_{name}_cpu_s"] = round(time.process_time() - c0, 3)
            tables[name] = t
        same_counts = bool(np.array_equal(tables["blocked"], tables["per_gram"]))
        table = tables.pop("blocked")
        tables.clear()
        scores = {}
        for name, fn in (("blocked", kn.mean_log_count), ("per_gram", score_direct))[:: 1 if rep % 2 == 0 else -1]:
            outs = [(np.empty(len(o) - 1), np.empty(len(o) - 1, np.int64)) for _, o in batches]
            fn(w0, o0, 4, table, 1.0, *outs[0])  # compile / load outside the timer
            c0 = time.process_time()
            for (w, o), (out, grams) in zip(batches, outs, strict=True):
                fn(w, o, 4, table, 1.0, out, grams)
            got[f"score_{name}_cpu_s"] = round(time.process_time() - c0, 3)
            scores[name] = np.concatenate([out for out, _ in outs])
        got["same_counters"] = same_counts
        got["same_score_bits"] = bool(np.array_equal(scores["blocked"].view(np.uint64), scores["per_gram"].view(np.uint64)))
        res["rounds"].append(got)
        print(json.dumps(got), file=sys.stderr)
    res["load_after"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(json.dumps(res, indent=2))
    write_json(args.out, res)
    return res


if __name__ == "__main__":
    main()
