"""``dedup.minhash``: MinHash LSH near-duplicate detection as a partitioned barrier stage.

Phases (they talk only through files keyed by ``doc_id`` and by node = (shard, row)):

1. **map** (per shard, parallel): word 5-gram shingles -> 128-permutation signatures (numba
   kernel, :mod:`dedup.signature`) -> one uint64 key per LSH band; the artifact holds
   ``doc_id``, the optional quality score, the band keys and the doc's shingle set (sorted
   unique uint32, for verification).
2. **reduce**, a plan of partitioned steps (:mod:`pipeline.reduce`, :mod:`dedup.components`);
   no process holds more than its partition and the driver holds only task descriptors:

   a. *buckets*: task *p* of P reads the band keys of every shard (streamed) and keeps the
      (band, key, node) rows whose key hashes into its range; sorted, equal keys are buckets,
      whose candidate pairs (all pairs up to ``max_bucket`` members, else a window) go to the
      partition of their first node;
   b. *verify*, where the shingles are: task *q* gathers the shingle sets of the nodes of its
      pairs (one shard's column at a time), walks the pairs with a local union-find, verifies
      by exact Jaccard those not yet joined and keeps the pairs that joined (a spanning forest);
   c. *components*: large-star / small-star rounds over those edges, partitioned by node,
      until nothing changes: every node gets its component's smallest node, exactly what
      single-process union-find gives;
   d. *keep policy*, per partition of component roots: an earlier snapshot's doc (``against``)
      if the cluster has one, else the highest ``quality_column`` score, else the earliest
      doc (shard, then row);
   e. *collect*, per shard: ``state/<name>/shards/part-<i>.parquet`` (``doc_id``,
      ``dedup.cluster``, ``dedup.cluster_size``, ``keep``; docs in clusters of size >= 2) and
      the persistent index part ``state/<name>/index/part-<i>.parquet`` (ids, scores, band
      keys, shingle sets), plus ``index.json``.
3. **apply** (per shard): loads only its shard's part; ``remove`` drops non-kept members
   (``drop_reason=near_duplicate``); every mode writes ``dedup.cluster`` (the kept doc's
   ``doc_id``; a singleton's own) and ``dedup.cluster_size``; ``soft`` keeps everyone and
   multiplies ``weight`` by ``cluster_size ** -soft_alpha``.

Incremental: the state folder (``<snapshot>/state/<stage name>/``) is the index. A later job
with ``against = ["<snapshot>", ...]`` reads those index parts as extra sources (nodes after
every new one; no signature is recomputed) and removes new documents that near-duplicate
earlier ones.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, model_validator

from pipeline import schema, storage
from pipeline.storage import Loc
from pipeline.registry import register
from pipeline.spec import SpecError
from pipeline.stage import PathField, BarrierStage, Resources, StageConfig, StageContext

#: each doc's shingle set, sorted unique uint32, as the bytes of the array (little-endian; a
#: Parquet binary value: no per-element levels to encode and decode, 3x faster to write and read
#: than a list<uint32>, which indexes of the /2 format hold and :func:`_sets_of` reads too)
SHINGLES = "shingles"
N_SHINGLES = "n_shingles"
BANDS = "bands"
SCORE = "score"
NEAR_DUP_REASON = "near_duplicate"


class MinhashDedupConfig(StageConfig):
    """Settings of ``dedup.minhash``; defaults: 5-word shingles, 128 permutations, J >= 0.8."""

    threshold: float = Field(
        0.8, gt=0.0, lt=1.0, description="Jaccard at or above which two docs are near-duplicates"
    )
    num_perm: int = Field(128, ge=8, le=1024, description="MinHash permutations (signature length)")
    ngram: int = Field(5, ge=1, le=32, description="words per shingle")
    seed: int = Field(1, ge=0, description="seed of the permutations; indexes must share it")
    bands: int | None = Field(None, ge=1, description="LSH bands; default: chosen from threshold")
    rows: int | None = Field(None, ge=1, description="rows per band; set together with bands")
    verify: bool = Field(
        True,
        description="check each candidate pair's exact shingle Jaccard before joining clusters",
    )
    mode: Literal["remove", "annotate", "soft"] = Field(
        "remove", description="remove non-kept duplicates, only annotate, or down-weight"
    )
    soft_alpha: float = Field(
        1.0, ge=0.0, description="soft mode: weight *= cluster_size ** -soft_alpha"
    )
    quality_column: str | None = Field(
        None, description="keep the cluster member with the highest value of this column"
    )
    against: list[str] = PathField(
        kind="snapshot",
        default_factory=list,
        description="earlier snapshot folders whose MinHash index new docs are deduped against",
    )
    max_bucket: int = Field(
        64,
        ge=2,
        description="buckets up to this size compare all pairs; larger ones a sliding window",
    )
    window: int = Field(
        8, ge=1, description="neighbours compared per member in an oversized bucket"
    )
    device: Literal["cpu", "cuda"] = Field(
        "cpu",
        description="where signatures are computed: cuda = the cuda_ext kernel (bit-identical; "
        "falls back to the CPU kernel with a warning when there is no GPU)",
    )

    @model_validator(mode="after")
    def _bands_rows(self) -> MinhashDedupConfig:
        if (self.bands is None) != (self.rows is None):
            raise ValueError(
                "set both `bands` and `rows`, or neither (then they follow `threshold`)"
            )
        if (
            self.bands is not None
            and self.rows is not None
            and self.bands * self.rows > self.num_perm
        ):
            raise ValueError(
                f"bands*rows = {self.bands}*{self.rows} = {self.bands * self.rows} exceeds "
                f"num_perm={self.num_perm}; lower them or raise num_perm"
            )
        return self


class CorruptIndexError(SpecError):
    """An index part (of an ``against`` snapshot) or a map artifact whose columns disagree
    (truncated, altered, another configuration's): the job stops with this one line, printed by
    ``assay run`` / ``assay dedup minhash`` like any :class:`SpecError`, instead of a traceback."""


def _find_index(snapshot: str) -> Loc:
    """The MinHash index folder inside a snapshot (``state/<name>/index.json``): a local folder
    or a URL (``s3://…``, ``gs://…``), read through :mod:`pipeline.storage`. A value that names
    no usable index (missing, unreadable, an unknown scheme) is a one-line ``SpecError``."""
    try:
        root = storage.as_loc(snapshot)
        if storage.is_file(root / "index.json"):
            return root
        # a /2 index has parts under index/, a /1 index an index.parquet (IndexMeta.read names the fix)
        found = sorted(m.parent for m in storage.glob(f"{root}/state/*/index.json")
                       if storage.is_dir(m.parent / "index") or storage.is_file(m.parent / "index.parquet"))
    except (OSError, ValueError) as e:  # a bad URL, an unreachable store, a path the store refuses
        raise SpecError(f"against: {snapshot!r} cannot be read: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    if not found:
        raise SpecError(
            f"against: {snapshot!r} holds no MinHash index (expected state/<stage>/index.json); "
            "it must be a snapshot written by a job that ran dedup.minhash"
        )
    if len(found) > 1:
        raise SpecError(
            f"against: {snapshot!r} holds several MinHash indexes {[str(p) for p in found]}; "
            "name the one you mean (its state/<stage> folder)"
        )
    return found[0]


@register
class MinhashDedupStage(BarrierStage):
    """Near-duplicate removal/annotation with verified MinHash LSH (see module docstring)."""

    kind = "dedup.minhash"
    preload = ("dedup.kernels", "dedup.cc_kernels", "dedup.signature", "dedup.lsh", "dedup.components", "polars")
    Config = MinhashDedupConfig
    inputs = (schema.DOC_ID, schema.TEXT)
    outputs = (schema.DEDUP_CLUSTER, schema.DEDUP_CLUSTER_SIZE)
    resources = Resources(cpus=1.0, memory_gb=1.0)
    remote_state = True  # load_state reads through pipeline.storage
    summary = (
        "MinHash LSH near-duplicates, verified Jaccard + union-find: remove/annotate/down-weight"
    )

    config: MinhashDedupConfig

    def __init__(self, config: StageConfig | dict[str, Any] | None = None, name: str | None = None):
        super().__init__(config, name)
        from dedup.lsh import choose_bands
        from dedup.signature import MinhashParams

        c = self.config
        self.params = MinhashParams(c.num_perm, c.ngram, c.seed)
        if c.bands is not None and c.rows is not None:
            self.bands, self.rows = c.bands, c.rows
        else:
            self.bands, self.rows = choose_bands(c.threshold, c.num_perm, c.verify)
        from pipeline.reduce import ShardStateCache

        self._state = ShardStateCache()

    def output_columns(self) -> tuple[str, ...]:
        if self.config.mode == "soft":
            return (*self.outputs, schema.WEIGHT)
        return self.outputs

    def setup(self) -> None:
        from dedup import signature

        # only the kernel map() calls: every cached kernel loaded costs its load in each
        # process (the reduce's kernels, dedup.cc_kernels, load where the reduce tasks run)
        signature.warm_up("signatures_and_sets")

    # -- map ----------------------------------------------------------------------------------

    def map(self, table: pa.Table, ctx: StageContext) -> pa.Table:
        from dedup.lsh import band_keys
        from dedup.signature import signatures_and_sets

        if self.config.device == "cuda":
            from cuda_ext import minhash as cuda_minhash

            before = cuda_minhash.FALLBACKS["calls"]
            sig, flat, offsets = cuda_minhash.signatures_and_sets(
                table.column(schema.TEXT), self.params, device="cuda"
            )
            if cuda_minhash.FALLBACKS["calls"] != before:
                ctx.add("cuda_fallback_batches", 1)
        else:
            sig, flat, offsets = signatures_and_sets(table.column(schema.TEXT), self.params)
        keys = band_keys(sig, self.bands, self.rows)
        cols: dict[str, pa.Array] = {schema.DOC_ID: table.column(schema.DOC_ID).combine_chunks()}
        qc = self.config.quality_column
        if qc is not None and qc in table.column_names:
            score = pc.cast(table.column(qc), pa.float64()).combine_chunks()
        else:
            score = pa.nulls(table.num_rows, pa.float64())
        cols[SCORE] = score
        # all band keys of a doc in one fixed-size binary value: one column to encode instead of
        # one per band (Parquet would try, and fail, to dictionary-encode each random column)
        keys = np.ascontiguousarray(keys)
        cols[BANDS] = pa.FixedSizeBinaryArray.from_buffers(
            pa.binary(8 * self.bands), table.num_rows, [None, pa.py_buffer(keys.tobytes())]
        )
        cols[SHINGLES] = shingle_sets_array(flat, offsets)
        cols[N_SHINGLES] = pa.array(np.diff(np.asarray(offsets)).astype(np.int32))
        ctx.add("signatures", table.num_rows)
        return pa.table(cols)

    # -- reduce -------------------------------------------------------------------------------

    def reduce_plan(self, rc):  # type: ignore[no-untyped-def]
        from dedup.components import OLD_BASE, components_plan
        from dedup.lsh import IndexMeta
        from pipeline.reduce import ReduceTask, shard_groups

        c = self.config
        olds = [_find_index(s) for s in c.against]
        for o in olds:
            try:
                meta = IndexMeta.read(o)
            except (OSError, ValueError, KeyError, TypeError) as e:  # /1, unknown format, bad index.json
                msg = str(e).splitlines()[0] if str(e) else type(e).__name__
                raise SpecError(f"against: index {o} cannot be used: {msg}") from None
            if (meta.params, meta.bands, meta.rows) != (self.params, self.bands, self.rows):
                raise SpecError(
                    f"against: index {o} was built with {meta.params}, {meta.bands} bands x "
                    f"{meta.rows} rows; this stage uses {self.params}, {self.bands} x {self.rows}. "
                    "Use the same num_perm/ngram/seed/bands/rows (or threshold) as that job."
                )
        sources = list(rc.artifacts)
        old_parts = [str(p) for o in olds for p in storage.glob(f"{o}/index/part-*.parquet")]
        sources += [(OLD_BASE + k, p) for k, p in enumerate(old_parts)]
        P = rc.partitions
        cand = rc.scratch_dir("candidates")
        counts = yield [ReduceTask(_bucket_task, (sources, p, P, self.bands, c.max_bucket, c.window, cand))
                        for p in range(P)]
        n_new, n_old = counts[0]
        edges = rc.scratch_dir("edges")
        ver = yield [ReduceTask(_verify_task, (cand, q, sources, c.threshold, c.verify, edges, P,
                                               VERIFY_BATCH_SHINGLES)) for q in range(P)]
        labels = yield from components_plan(edges, rc.scratch_dir("components"), P)
        members = rc.scratch_dir("members")
        kept = yield [ReduceTask(_keep_task, (labels, r, sources, f"{members}/part-{r:05d}.parquet"))
                      for r in range(P)]
        member_files = [f"{members}/part-{r:05d}.parquet" for r in range(P)]
        yield [ReduceTask(_collect_task, (member_files, g, rc.state_dir)) for g in shard_groups(rc)]
        meta = IndexMeta(self.params, self.bands, self.rows, c.threshold, n_new)
        in_clusters = sum(k[0] for k in kept)
        info = meta.to_json() | {
            "candidate_pairs": int(sum(v[0] for v in ver)),
            "docs_in_clusters": int(in_clusters),
            "docs_removed": int(sum(k[1] for k in kept)),
            "clusters": int(sum(k[2] for k in kept)),
            "against": [str(o) for o in olds],
            "against_docs": int(n_old),
        }
        from pipeline.reduce import join, put_json

        put_json(join(rc.state_dir, "index.json"), json.dumps(info, indent=2, sort_keys=True))
        # how much verification work the partitions did (depends on the partitioning: marker only)
        return {"pairs_checked": int(sum(v[1] for v in ver)), "pairs_joined": int(sum(v[2] for v in ver)),
                "verify_batches": int(sum(v[3] for v in ver))}

    # -- apply --------------------------------------------------------------------------------

    def load_state(self, state_dir: Path) -> None:
        self._state.open(state_dir)

    def process(self, table: pa.Table, ctx: StageContext) -> pa.Table:
        if table.num_rows == 0:
            return table
        ids = table.column(schema.DOC_ID).combine_chunks().cast(pa.string())
        idx = self._state.lookup(ids, ctx.shard_index)
        found = idx >= 0
        size = np.ones(table.num_rows, dtype=np.int32)
        keep = np.ones(table.num_rows, dtype=bool)
        cluster: pa.Array = ids
        st = self._state.table(ctx.shard_index)
        if st is not None and found.any():
            take = pa.array(np.where(found, idx, 0))
            size[found] = st.column(schema.DEDUP_CLUSTER_SIZE).take(take).to_numpy()[found]
            keep[found] = st.column("keep").take(take).to_numpy(zero_copy_only=False)[found]
            cl = st.column(schema.DEDUP_CLUSTER).take(take).combine_chunks()
            cluster = pc.if_else(pa.array(found), cl, ids)
        ctx.add("in_clusters", int((size > 1).sum()))
        table = _set(table, schema.DEDUP_CLUSTER, cluster.cast(pa.string()))
        table = _set(table, schema.DEDUP_CLUSTER_SIZE, pa.array(size, pa.int32()))
        if self.config.mode == "soft":
            w = size.astype(np.float64) ** (-self.config.soft_alpha)
            if schema.WEIGHT in table.column_names:
                w = (
                    w
                    * pc.fill_null(
                        pc.cast(table.column(schema.WEIGHT), pa.float64()), 1.0
                    ).to_numpy()
                )
            return _set(table, schema.WEIGHT, pa.array(w, pa.float64()))
        if self.config.mode == "annotate" or keep.all():
            return table
        dropped = table.filter(pa.array(~keep))
        ctx.drop(dropped, NEAR_DUP_REASON)
        return table.filter(pa.array(keep))


def _set(table: pa.Table, name: str, values: pa.Array) -> pa.Table:
    if name in table.column_names:
        return table.set_column(table.column_names.index(name), name, values)
    return table.append_column(name, values)


# -- reduce tasks (module level: they run in other processes and on Ray) -------------------------


def shingle_sets_array(flat: np.ndarray, offsets: np.ndarray) -> pa.Array:
    """The ``SHINGLES`` column: doc *i*'s set is ``flat[offsets[i]:offsets[i + 1]]`` (uint32)."""
    offs = np.asarray(offsets, dtype=np.int64)
    vals = np.ascontiguousarray(flat[offs[0]: offs[-1]], dtype="<u4")
    return pa.LargeBinaryArray.from_buffers(
        pa.large_binary(), offs.size - 1, [None, pa.py_buffer((offs - offs[0]) * 4), pa.py_buffer(vals)])


def _sets_of(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(flat uint32 values, int64 offsets from 0) of a ``SHINGLES`` array of either layout."""
    if pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type):  # a /2 index part
        lists = arr.cast(pa.large_list(pa.uint32()))
        offs = lists.offsets.to_numpy().astype(np.int64)
        flat = lists.values.to_numpy()[offs[0]: offs[-1]].astype(np.uint32)
        return flat, offs - offs[0]
    b = arr.cast(pa.large_binary())
    offs = np.frombuffer(b.buffers()[1], dtype=np.int64)[b.offset: b.offset + len(b) + 1]
    data = b.buffers()[2]
    raw = np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(0, np.uint8)
    if np.any(offs % 4):
        raise CorruptIndexError(f"a {SHINGLES} value is not a whole number of uint32 shingles (corrupt index or artifact)")
    flat = raw[offs[0]: offs[-1]].view("<u4").astype(np.uint32, copy=False)
    return flat, (offs - offs[0]) // 4


def _row_groups(path: str, columns: list[str]):  # type: ignore[no-untyped-def]
    from pipeline.reduce import parquet_file

    pf = parquet_file(path)
    for rg in range(pf.num_row_groups):
        yield pf.read_row_group(rg, columns=columns)


def _band_salt(b: int) -> np.uint64:
    return np.uint64((0x9E3779B97F4A7C15 * (b + 1)) & 0xFFFFFFFFFFFFFFFF)


def _bucket_task(sources: list[tuple[int, str]], part: int, partitions: int, bands: int, max_bucket: int,
                 window: int, out_dir: str) -> tuple[int, int]:
    """Step a: the (band, key, node) rows of this key range -> buckets -> candidate pairs."""
    from dedup.components import OLD_BASE, ROW_BITS, bucket_pairs, unique_pairs
    from dedup.components import _save_edges as save
    from pipeline.reduce import hash_partition

    # per band: (key, node) of this range; a band is sorted on its own, so the sort never
    # holds more than one band's rows of the range beside the range itself (16 B per doc-band)
    ks: list[list[np.ndarray]] = [[] for _ in range(bands)]
    ns: list[list[np.ndarray]] = [[] for _ in range(bands)]
    n_new = n_old = 0
    for src, path in sources:
        row = 0
        for t in _row_groups(path, [BANDS, N_SHINGLES]):
            fsb = t.column(BANDS).combine_chunks()
            if fsb.type.byte_width != 8 * bands:
                raise CorruptIndexError(
                    f"artifact {path} holds {fsb.type.byte_width // 8} bands, expected {bands}"
                    "; artifacts from another configuration? delete the run folder's _work"
                )
            n = len(fsb)
            keys = np.frombuffer(fsb.buffers()[1], dtype=np.uint64)[
                fsb.offset * bands : (fsb.offset + n) * bands
            ].reshape(n, bands)
            nodes = (np.int64(src) << np.int64(ROW_BITS)) | np.arange(row, row + n, dtype=np.int64)
            row += n
            has = t.column(N_SHINGLES).to_numpy() > 0  # docs without shingles never share a bucket
            for b in range(bands):
                kb = keys[:, b]
                sel = has & (hash_partition(kb ^ _band_salt(b), partitions) == part)
                if sel.any():
                    ks[b].append(kb[sel].copy())
                    ns[b].append(nodes[sel])
        if src >= OLD_BASE:
            n_old += row
        else:
            n_new += row
    pa_list, pb_list = [], []
    for b in range(bands):
        if not ks[b]:
            continue
        key, node = np.concatenate(ks[b]), np.concatenate(ns[b])
        ks[b] = ns[b] = []
        order = np.lexsort((node, key))
        key, node = key[order], node[order]
        a, b_ = bucket_pairs(np.zeros(key.size, np.int16), key, node, max_bucket, window, OLD_BASE << ROW_BITS)
        pa_list.append(a)
        pb_list.append(b_)
    if pa_list:
        a, b_ = unique_pairs(np.concatenate(pa_list), np.concatenate(pb_list))
    else:
        a = b_ = np.zeros(0, np.int64)
    save(out_dir, a, b_, partitions, f"from-{part:05d}")  # to the partition of the first node
    return n_new, n_old


def _gather(sources: dict[int, str], nodes: np.ndarray, column: str) -> pa.Array:
    """``column``'s value for each (sorted, unique) node, read one source at a time."""
    from dedup.components import ROW_BITS, ROW_MASK
    from pipeline.reduce import read_parquet

    src = nodes >> np.int64(ROW_BITS)
    parts: list[pa.Array] = []
    for s in np.unique(src).tolist():
        rows = (nodes[src == s] & np.int64(ROW_MASK)).astype(np.int64)
        col = read_parquet(sources[s], columns=[column]).column(0)
        part = col.take(pa.array(rows)).combine_chunks()
        if column == SHINGLES and not pa.types.is_large_binary(part.type):  # a /2 index part
            flat, offs = _sets_of(part)
            part = shingle_sets_array(flat, offs)
        parts.append(part)
    if not parts:
        return pa.array([], pa.null())
    return pa.concat_arrays(parts) if len(parts) > 1 else parts[0]


def _gather_sets(sources: dict[int, str], nodes: np.ndarray, counts: np.ndarray,
                 group: np.ndarray, n_groups: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per group, (flat, offsets) of the shingle sets of its nodes (``nodes`` sorted and unique,
    ``counts`` shingles each, node *i* in group ``group[i]``), all groups read in one pass.

    Each group fills one preallocated array; each source is streamed in record batches of 1024
    rows (buffered page reads, on this thread), and the Arrow pool's freed pages are handed back
    after each source: besides the result, about one batch of one source is held — not a whole
    shard's column, nor what the pool kept of every shard read before (measured: most of the task).
    """
    import pyarrow.parquet as pq

    from dedup.components import ROW_BITS, ROW_MASK

    out, wpos = [], np.zeros(n_groups, np.int64)
    for g in range(n_groups):
        c = counts[group == g]
        offs = np.zeros(c.size + 1, np.int64)
        np.cumsum(c, out=offs[1:])
        out.append((np.empty(int(offs[-1]), np.uint32), offs))
    src = nodes >> np.int64(ROW_BITS)
    pos = 0  # next node to fill
    for s in np.unique(src).tolist():
        rows = (nodes[src == s] & np.int64(ROW_MASK)).astype(np.int64)
        k = start = 0
        pf = pq.ParquetFile(storage.open_input_file(sources[s]), buffer_size=1 << 20)
        for batch in pf.iter_batches(batch_size=1024, columns=[SHINGLES], use_threads=False):
            hi = int(np.searchsorted(rows, start + batch.num_rows))
            if hi > k:
                try:
                    f, o = _sets_of(batch.column(0).take(pa.array(rows[k:hi] - start)))
                except CorruptIndexError as e:
                    raise CorruptIndexError(f"artifact {sources[s]}: {e}") from None
                if not np.array_equal(np.diff(o), counts[pos: pos + hi - k]):
                    raise CorruptIndexError(f"artifact {sources[s]}: {N_SHINGLES} disagrees with its {SHINGLES} column")
                grp = group[pos: pos + hi - k]
                present = np.unique(grp).tolist()
                for g in present:
                    part = f if len(present) == 1 else f[np.repeat(grp == g, np.diff(o))]
                    out[g][0][wpos[g]: wpos[g] + part.size] = part
                    wpos[g] += part.size
                pos += hi - k
                k = hi
            start += batch.num_rows
            if k == rows.size:
                break
        del pf
        pa.default_memory_pool().release_unused()
        if k != rows.size:
            raise CorruptIndexError(f"artifact {sources[s]} has {start} rows; candidate pairs name row {int(rows[k])}")
    return out


def _counts(sources: dict[int, str], nodes: np.ndarray) -> np.ndarray:
    """``N_SHINGLES`` of each (sorted, unique) node, one source's column at a time."""
    import pyarrow.parquet as pq

    from dedup.components import ROW_BITS, ROW_MASK

    out = np.zeros(nodes.size, np.int64)
    src = nodes >> np.int64(ROW_BITS)
    for s in np.unique(src).tolist():
        sel = src == s
        col = pq.ParquetFile(storage.open_input_file(sources[s])).read(columns=[N_SHINGLES], use_threads=False)
        out[sel] = col.column(0).to_numpy()[nodes[sel] & np.int64(ROW_MASK)]
        del col
    pa.default_memory_pool().release_unused()
    return out


# Resident second-side shingles per verify batch: a quarter of the first side's, and at least this
# many (16 MB: smaller corpora verify in one batch). Tests set VERIFY_BATCH_SHINGLES to force batches.
VERIFY_MIN_BATCH_SHINGLES = 1 << 22
VERIFY_BATCH_SHINGLES = 0  # > 0: this many b-side shingles per batch, whatever the sizes


def _verify_task(cand_dir: str, q: int, sources: list[tuple[int, str]], threshold: float, verify: bool,
                 out_dir: str, partitions: int, batch_shingles: int = 0) -> tuple[int, int, int, int]:
    """Step b: this partition's distinct candidate pairs verified; joined pairs become edges.

    Pairs come here by their first node, so the first nodes are this partition's share of the
    candidate documents, while the second nodes spread over all partitions. The first nodes'
    shingle sets are loaded once; the other second nodes are split by node range into batches of
    at most ``max(first nodes' shingles / 4, VERIFY_MIN_BATCH_SHINGLES)`` shingles (or
    ``batch_shingles`` if > 0), one batch's sets resident at a time, so the task holds about
    1.25 times its own share instead of all the documents its pairs touch. One union-find runs over
    all batches: a pair is skipped only when verified pairs already joined its two documents,
    so the edges span exactly the components of the verified graph, whatever the batches.
    Returns (candidate pairs, pairs checked, pairs joined, batches).
    """
    from dedup.components import _load_inbox, send_undirected, verify_spanning, verify_spanning_sets

    a, b = _load_inbox(cand_dir, q)
    n_cand = int(a.size)
    if n_cand == 0:
        send_undirected(out_dir, a, b, partitions, f"from-{q:05d}")
        return 0, 0, 0, 0
    nodes = np.unique(np.r_[a, b])
    la = np.searchsorted(nodes, a).astype(np.int64)
    lb = np.searchsorted(nodes, b).astype(np.int64)
    if not verify:
        flat, offs = np.zeros(1, np.uint32), np.zeros(nodes.size + 1, np.int64)
        joined, stats = verify_spanning(la, lb, nodes.size, flat, offs, threshold, verify)
        send_undirected(out_dir, a[joined], b[joined], partitions, f"from-{q:05d}")
        return n_cand, int(stats[0]), int(stats[1]), 1
    src = dict(sources)
    first = a[np.r_[True, a[1:] != a[:-1]]]  # a is sorted
    is_first = np.zeros(nodes.size, bool)
    is_first[np.searchsorted(nodes, first)] = True
    counts = _counts(src, nodes)
    rest, n_rest = nodes[~is_first], counts[~is_first]
    a_side = int(counts[is_first].sum())
    budget = batch_shingles if batch_shingles > 0 else max(a_side // 4, VERIFY_MIN_BATCH_SHINGLES)
    rest_batch = (np.cumsum(n_rest) - n_rest) // budget  # contiguous node ranges
    n_batches = int(rest_batch[-1]) + 1 if rest.size else 0
    b_first = is_first[lb]
    pair_batch = np.full(n_cand, -1, np.int64)
    pair_batch[~b_first] = rest_batch[np.searchsorted(rest, b[~b_first])]
    parent = np.arange(nodes.size, dtype=np.int64)
    stats = np.zeros(2, np.int64)
    joined = np.zeros(n_cand, bool)
    sa = np.searchsorted(first, a).astype(np.int64)
    # one pass reads the first nodes' sets and the first batch's (group 1), later batches their own
    node_group = np.where(is_first, 0, 2)
    node_group[~is_first] = np.where(rest_batch == 0, 1, 2)
    first_batch = node_group < 2
    (fa, oa), (fb, ob) = _gather_sets(src, nodes[first_batch], counts[first_batch], node_group[first_batch], 2)
    del node_group, first_batch
    sel = np.flatnonzero(b_first)  # both sets are the first side's
    joined[sel] = verify_spanning_sets(la[sel], lb[sel], sa[sel], np.searchsorted(first, b[sel]).astype(np.int64),
                                       fa, oa, fa, oa, threshold, parent, stats)
    for g in range(n_batches):
        in_g = rest_batch == g
        members = rest[in_g]
        if g > 0:
            del fb, ob
            ((fb, ob),) = _gather_sets(src, members, n_rest[in_g], np.zeros(members.size, np.int64), 1)
        sel = np.flatnonzero(pair_batch == g)
        joined[sel] = verify_spanning_sets(la[sel], lb[sel], sa[sel], np.searchsorted(members, b[sel]).astype(np.int64),
                                           fa, oa, fb, ob, threshold, parent, stats)
    send_undirected(out_dir, a[joined], b[joined], partitions, f"from-{q:05d}")
    return n_cand, int(stats[0]), int(stats[1]), n_batches + 1


_MEMBER_SCHEMA = pa.schema([
    ("shard", pa.int32()), ("node", pa.int64()), (schema.DOC_ID, pa.string()),
    (schema.DEDUP_CLUSTER, pa.string()), (schema.DEDUP_CLUSTER_SIZE, pa.int32()), ("keep", pa.bool_()),
])


def _keep_task(labels_dir: str, r: int, sources: list[tuple[int, str]], out: str) -> tuple[int, int, int]:
    """Step d: keeper, size and keep flag of every new member of the components rooted here."""
    from dedup.components import OLD_BASE, ROW_BITS, load_labels

    root, node = load_labels(labels_dir, r)
    src_map = dict(sources)
    is_old = (node >> np.int64(ROW_BITS)) >= OLD_BASE
    score = np.full(node.size, -np.inf)
    new_nodes = node[~is_old]
    if new_nodes.size:
        order_new = np.argsort(new_nodes)
        s = _gather(src_map, new_nodes[order_new], SCORE)
        vals = pc.fill_null(s.cast(pa.float64()), float("-inf")).to_numpy(zero_copy_only=False)
        tmp = np.empty(new_nodes.size)
        tmp[order_new] = vals
        score[~is_old] = tmp
    # sort by (root, old first, score desc, node asc); the first of each root is kept
    order = np.lexsort((node, -score, -is_old.astype(np.int8), root))
    root, node, is_old = root[order], node[order], is_old[order]
    starts = np.flatnonzero(np.r_[True, root[1:] != root[:-1]]) if root.size else np.zeros(0, np.int64)
    counts = np.diff(np.r_[starts, root.size])
    keeper = np.repeat(node[starts], counts)
    size = np.repeat(counts, counts).astype(np.int32)
    new = ~is_old
    m_node, m_keeper, m_size = node[new], keeper[new], size[new]
    if m_node.size == 0:
        table = _MEMBER_SCHEMA.empty_table()
        n_clusters = 0
    else:
        want = np.unique(np.r_[m_node, m_keeper])
        ids = _gather(src_map, want, schema.DOC_ID).cast(pa.string())
        n_clusters = int(np.unique(root[new]).size)
        order2 = np.argsort(m_node, kind="stable")
        m_node, m_keeper, m_size = m_node[order2], m_keeper[order2], m_size[order2]
        table = pa.table({
            "shard": pa.array((m_node >> np.int64(ROW_BITS)).astype(np.int32)),
            "node": pa.array(m_node),
            schema.DOC_ID: ids.take(pa.array(np.searchsorted(want, m_node))),
            schema.DEDUP_CLUSTER: ids.take(pa.array(np.searchsorted(want, m_keeper))),
            schema.DEDUP_CLUSTER_SIZE: pa.array(m_size),
            "keep": pa.array(m_node == m_keeper),
        }, schema=_MEMBER_SCHEMA)
    from pipeline.reduce import write_scratch_table

    write_scratch_table(out, table, row_group_size=65536)
    removed = int(table.num_rows - (pc.sum(table.column("keep")).as_py() or 0))
    return int(table.num_rows), removed, n_clusters


_STATE_SCHEMA = pa.schema([
    (schema.DOC_ID, pa.string()), (schema.DEDUP_CLUSTER, pa.string()),
    (schema.DEDUP_CLUSTER_SIZE, pa.int32()), ("keep", pa.bool_()),
])


def _collect_task(member_files: list[str], group: list[tuple[int, str]], state_dir: str) -> None:
    """Step e: each shard's members from every root partition -> its apply state; index part."""
    from pipeline import storage
    from pipeline.reduce import is_local, join, read_parquet, shard_state_path, write_table

    for shard, artifact in group:
        parts = [read_parquet(f, filters=[("shard", "=", shard)]) for f in member_files]
        t = pa.concat_tables(parts)
        if t.num_rows:
            t = t.sort_by("node")
            if pc.count_distinct(t.column(schema.DOC_ID)).as_py() < t.num_rows:
                t = _merge_repeated_ids(t)
            t = t.select([f.name for f in _STATE_SCHEMA]).cast(_STATE_SCHEMA).sort_by(schema.DOC_ID)
            write_table(shard_state_path(state_dir, shard), t)
        # the artifact is the index part (immutable once written: a link where the disk allows,
        # a server-side copy on an object store)
        if not (is_local(state_dir) and is_local(artifact)):
            storage.copy_file(artifact, join(state_dir, "index", f"part-{shard:05d}.parquet"))
            del parts, t
            pa.default_memory_pool().release_unused()
            continue
        dest = Path(state_dir) / "index" / f"part-{shard:05d}.parquet"
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.tmp")
        tmp.unlink(missing_ok=True)
        try:
            os.link(artifact, tmp)
        except OSError:
            shutil.copyfile(artifact, tmp)
        tmp.replace(dest)
        del parts, t
        pa.default_memory_pool().release_unused()  # else the pool keeps pages of every shard's read


def _merge_repeated_ids(t: pa.Table) -> pa.Table:
    """The same doc_id twice in a shard (the same record read twice): never drop both copies."""
    import polars as pl

    df = pl.from_arrow(t).group_by(schema.DOC_ID, maintain_order=True).agg(
        pl.col(schema.DEDUP_CLUSTER).last(), pl.col(schema.DEDUP_CLUSTER_SIZE).last(), pl.col("keep").any(),
    )
    return df.to_arrow()
