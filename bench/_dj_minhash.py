"""Data-Juicer's ``document_minhash_deduplicator`` on a Parquet file of texts, in DJ's own venv.

Run by ``bench/dedup.py`` as ``.venv-dj/bin/python bench/_dj_minhash.py IN.parquet OUT.npy
JSON_CONFIG``; imports only Data-Juicer (``py-data-juicer==1.6.1``), ``datasets``, numpy and
pyarrow, nothing of assay. The operator runs as Data-Juicer runs it (``op.run(dataset)``:
``compute_hash`` mapped over a ``NestedDataset`` with ``num_proc=1``, then ``process``: LSH
bands into hash tables, union-find, keep each cluster's first doc).

``process`` keeps only one doc per cluster, so which docs *were* in a cluster of >= 2 (the
doc-level prediction every method is scored on) is read from its union-find: the module's
``UnionFind`` is replaced by a subclass that only remembers its instance, and a doc counts as
predicted when its set there holds >= 2 docs (its final filter calls ``find`` on every doc, so
singletons are in ``parent`` too, as their own roots).

Prints one JSON line: CPU and wall seconds from before the operator is built (its
``optimal_param`` band search included) to the kept dataset, imports excluded; the CPU counts
this process and its children (``NestedDataset.map`` hashes in a ``multiprocess`` worker even
at ``num_proc=1``; ``run`` ends with ``free_models()``, which imports torch); the bands and
rows it chose; docs kept.
"""

from __future__ import annotations

import json
import resource
import sys
import time


def _cpu() -> float:
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def main() -> None:
    inp, out, cfg_json = sys.argv[1], sys.argv[2], sys.argv[3]
    cfg = json.loads(cfg_json)
    import datasets
    import numpy as np
    import pyarrow.parquet as pq
    from data_juicer.core.data import NestedDataset
    from data_juicer.ops.deduplicator import document_minhash_deduplicator as mod

    datasets.disable_caching()
    datasets.disable_progress_bars()
    try:
        from loguru import logger

        logger.remove()
    except Exception:  # noqa: BLE001 - logging is cosmetic
        pass

    seen: list = []

    class RecordingUnionFind(mod.UnionFind):
        def __init__(self) -> None:
            super().__init__()
            seen.append(self)

    mod.UnionFind = RecordingUnionFind
    texts = pq.read_table(inp, columns=["text"]).column("text").to_pylist()
    ds = NestedDataset(datasets.Dataset.from_dict({"text": texts}))
    c0, t0 = _cpu(), time.perf_counter()
    op = mod.DocumentMinhashDeduplicator(num_proc=1, auto_op_parallelism=False, **cfg)
    kept = op.run(ds)
    cpu, wall = _cpu() - c0, time.perf_counter() - t0
    pred = np.zeros(len(texts), dtype=bool)
    if seen:  # a doc is predicted a duplicate when its union-find set has >= 2 docs
        uf = seen[-1]
        roots = np.array([uf.find(i) for i in range(len(texts))], dtype=np.int64)
        sizes = np.bincount(roots, minlength=len(texts))
        pred = sizes[roots] > 1
        # the instrumentation reads what process() did: it kept one doc per set
        if len(texts) - len(kept) != int(pred.sum()) - int((sizes > 1).sum()):
            raise SystemExit("union-find sets disagree with the docs Data-Juicer kept")
    np.save(out, pred)
    print(
        json.dumps(
            {
                "cpu_s": cpu,
                "wall_s": wall,
                "bands": op.num_bands,
                "rows": op.num_rows_per_band,
                "kept": len(kept),
                "docs": len(texts),
            }
        )
    )


if __name__ == "__main__":
    main()
