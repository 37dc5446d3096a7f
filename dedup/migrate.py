"""Convert a MinHash index of the old ``assay.minhash-index/1`` layout to the current ``/3``.

``/1`` (written before the partitioned reduce) kept, in ``state/<stage>/``: ``index.json``,
``index.parquet`` (``doc_id`` + one uint64 column per band), ``shingles.u32`` (every document's
shingle hashes, concatenated) and ``shingle_offsets.npy`` (``n_docs + 1`` offsets into it).
``/2`` and ``/3`` keep per-shard parts ``index/part-<i>.parquet`` holding the map artifact's
columns (``doc_id``, ``score``, all band keys as one fixed-size binary, ``shingles``,
``n_shingles``): the reduce reads earlier snapshots' parts exactly as it reads this run's
artifacts. ``/3`` stores each shingle set as the bytes of its uint32 array, ``/2`` as a
list<uint32>; both are read as they are (no migration).

The conversion streams ``index.parquet`` row group by row group (the shingle store is memory
mapped), so it holds one row group at a time. ``/1`` did not keep scores: they become null,
which changes nothing — documents of an earlier snapshot are always the ones kept. The ``/1``
files are left in place; ``index.json`` is rewritten last (atomically), so a killed migration
leaves a ``/1`` index that can be migrated again.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

V1_FORMAT = "assay.minhash-index/1"


def migrate_index(state_dir: str | Path) -> int:
    """Rewrite the ``/1`` index in ``state_dir`` in the current layout; returns the documents converted."""
    from dedup.lsh import INDEX_FORMAT, READABLE_FORMATS, band_column
    from dedup.minhash import BANDS, N_SHINGLES, SCORE, SHINGLES, shingle_sets_array
    from pipeline import schema
    from pipeline.writers import atomic_write_json

    state = Path(state_dir)
    meta_path = state / "index.json"
    info = json.loads(meta_path.read_text())
    fmt = info.get("format")
    if fmt in READABLE_FORMATS:
        return 0
    if fmt != V1_FORMAT:
        raise ValueError(f"{meta_path}: format {fmt!r} is neither {V1_FORMAT} nor {INDEX_FORMAT}; cannot migrate")
    bands = int(info["bands"])
    offsets = np.load(state / "shingle_offsets.npy")
    store_path = state / "shingles.u32"
    store = (np.memmap(store_path, dtype=np.uint32, mode="r") if store_path.stat().st_size
             else np.zeros(0, dtype=np.uint32))
    pf = pq.ParquetFile(state / "index.parquet")
    if pf.metadata.num_rows + 1 != len(offsets):
        raise ValueError(f"{state}: index.parquet has {pf.metadata.num_rows} docs but shingle_offsets.npy "
                         f"{len(offsets) - 1}: the /1 index is incomplete; rebuild it by re-running its job")
    out = state / "index" / "part-00000.parquet"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    band_cols = [band_column(b) for b in range(bands)]
    row = 0
    writer: pq.ParquetWriter | None = None
    try:
        for rg in range(pf.num_row_groups):
            t = pf.read_row_group(rg)
            n = t.num_rows
            keys = np.stack([t.column(c).to_numpy() for c in band_cols], axis=1).astype(np.uint64)
            lo = offsets[row: row + n + 1]
            flat = np.asarray(store[int(lo[0]): int(lo[-1])], dtype=np.uint32)
            part = pa.table({
                schema.DOC_ID: t.column(schema.DOC_ID).combine_chunks(),
                SCORE: pa.nulls(n, pa.float64()),
                BANDS: pa.FixedSizeBinaryArray.from_buffers(
                    pa.binary(8 * bands), n, [None, pa.py_buffer(np.ascontiguousarray(keys).tobytes())]),
                SHINGLES: shingle_sets_array(flat, lo - lo[0]),
                N_SHINGLES: pa.array(np.diff(lo).astype(np.int32)),
            })
            if writer is None:
                writer = pq.ParquetWriter(tmp, part.schema)
            writer.write_table(part)
            row += n
        if writer is not None:  # an empty index has no parts
            writer.close()
            writer = None
            tmp.replace(out)
    finally:
        if writer is not None:
            writer.close()
        tmp.unlink(missing_ok=True)
    atomic_write_json(meta_path, {**info, "format": INDEX_FORMAT, "migrated_from": V1_FORMAT})
    return row
