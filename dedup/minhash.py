"""``dedup.minhash``: MinHash LSH near-duplicate detection as a barrier stage.

Phases (they talk only through files keyed by ``doc_id``):

1. **map** (per shard, parallel): word 5-gram shingles -> 128-permutation signatures (numba
   kernel, :mod:`dedup.signature`) -> one uint64 key per LSH band; the artifact holds
   ``doc_id``, the optional quality score, the band keys and the doc's shingle set (sorted
   unique uint32, for verification).
2. **reduce** (once): copies keys into the persistent index (``index.parquet``) and shingle sets
   into a flat memory-mapped file, then band by band: sort keys -> buckets -> candidate pairs
   verified by exact Jaccard -> union-find (:mod:`dedup.lsh`); pairs are never held in RAM.
   Keep policy per cluster: a document of an earlier snapshot (``against``) if there is one,
   else the highest ``quality_column`` score, else the earliest document (shard, then row).
   Writes ``clusters.parquet`` (docs in clusters of size >= 2) and ``index.json``.
3. **apply** (per shard): ``remove`` drops non-kept members (``drop_reason=near_duplicate``);
   every mode writes ``dedup.cluster`` (the kept doc's ``doc_id``; a singleton's own) and
   ``dedup.cluster_size``; ``soft`` keeps everyone and multiplies ``weight`` by
   ``cluster_size ** -soft_alpha``.

Incremental: the state folder (``<snapshot>/state/<stage name>/``) is the index. A later job
with ``against = ["<snapshot>", ...]`` loads those indexes' band keys and shingle sets (no
signature is recomputed) and removes new documents that near-duplicate earlier ones.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import Field, model_validator

from pipeline import schema
from pipeline.registry import register
from pipeline.stage import PathField, BarrierStage, Resources, StageConfig, StageContext

SHINGLES = "shingles"
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


def _find_index(snapshot: str) -> Path:
    """The MinHash index folder inside a snapshot (``state/<name>/index.json``)."""
    root = Path(snapshot)
    if (root / "index.json").exists():
        return root
    found = sorted(p.parent for p in (root / "state").glob("*/index.json"))
    if not found:
        raise FileNotFoundError(
            f"against: {snapshot!r} holds no MinHash index (expected state/<stage>/index.json); "
            "it must be a snapshot written by a job that ran dedup.minhash"
        )
    if len(found) > 1:
        raise ValueError(
            f"against: {snapshot!r} holds several MinHash indexes {[str(p) for p in found]}; "
            "name the one you mean (its state/<stage> folder)"
        )
    return found[0]


@register
class MinhashDedupStage(BarrierStage):
    """Near-duplicate removal/annotation with verified MinHash LSH (see module docstring)."""

    kind = "dedup.minhash"
    Config = MinhashDedupConfig
    inputs = (schema.DOC_ID, schema.TEXT)
    outputs = (schema.DEDUP_CLUSTER, schema.DEDUP_CLUSTER_SIZE)
    resources = Resources(cpus=1.0, memory_gb=1.0)
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
        self._clusters: dict[str, tuple[str, int, bool]] = {}

    def output_columns(self) -> tuple[str, ...]:
        if self.config.mode == "soft":
            return (*self.outputs, schema.WEIGHT)
        return self.outputs

    def setup(self) -> None:
        from dedup import lsh, signature

        signature.warm_up()
        lsh.warm_up()

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
        cols[SHINGLES] = pa.LargeListArray.from_arrays(
            pa.array(offsets, pa.int64()), pa.array(flat, pa.uint32())
        )
        ctx.add("signatures", table.num_rows)
        return pa.table(cols)

    # -- reduce -------------------------------------------------------------------------------

    def reduce(self, artifact_paths: list[Path], state_dir: Path) -> None:
        from dedup.lsh import IndexMeta, band_column, cluster_band, find_roots

        state_dir.mkdir(parents=True, exist_ok=True)
        n_new, doc_ids, scores = _build_index(artifact_paths, state_dir, self.bands)
        flat_new, offs_new = _open_store(state_dir)

        olds = [_find_index(s) for s in self.config.against]
        for o in olds:
            meta = IndexMeta.read(o)
            if (meta.params, meta.bands, meta.rows) != (self.params, self.bands, self.rows):
                raise ValueError(
                    f"against: index {o} was built with {meta.params}, {meta.bands} bands x "
                    f"{meta.rows} rows; this stage uses {self.params}, {self.bands} x {self.rows}. "
                    "Use the same num_perm/ngram/seed/bands/rows (or threshold) as that job."
                )
        tmp = Path(tempfile.mkdtemp(prefix="minhash-old-", dir=state_dir))
        try:
            flat_old, offs_old, old_ids = _concat_old_stores(olds, tmp)
            n_old = len(old_ids)
            n = n_new + n_old
            parent = np.arange(n, dtype=np.int64)
            stats = np.zeros(3, dtype=np.int64)
            empty_new = np.diff(offs_new) == 0
            empty_old = np.diff(offs_old) == 0
            empty = np.concatenate([empty_new, empty_old])
            # unique keys for docs without shingles so they never share a bucket
            unique_keys = np.arange(n, dtype=np.uint64) | np.uint64(1 << 63)
            for b in range(self.bands):
                col = band_column(b)
                parts = [pq.read_table(state_dir / "index.parquet", columns=[col]).column(0)]
                parts += [pq.read_table(o / "index.parquet", columns=[col]).column(0) for o in olds]
                keys = np.concatenate(
                    [p.to_numpy() for p in parts] or [np.zeros(0, np.uint64)]
                ).astype(np.uint64, copy=False)
                keys = np.where(empty, unique_keys, keys)
                cluster_band(
                    keys,
                    parent,
                    n_new,
                    (flat_new, offs_new),
                    (flat_old, offs_old),
                    self.config.threshold,
                    self.config.verify,
                    self.config.max_bucket,
                    self.config.window,
                    stats,
                )
            root = find_roots(parent)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

        clusters = _keep_policy(root, n_new, doc_ids, old_ids, scores)
        pq.write_table(clusters, state_dir / "clusters.parquet")
        meta = IndexMeta(self.params, self.bands, self.rows, self.config.threshold, n_new)
        info = meta.to_json() | {
            "candidate_pairs": int(stats[0]),
            "pairs_checked": int(stats[1]),
            "pairs_joined": int(stats[2]),
            "docs_in_clusters": int(clusters.num_rows),
            "docs_removed": int(clusters.num_rows - pc.sum(clusters.column("keep")).as_py())
            if clusters.num_rows
            else 0,
            "against": [str(o) for o in olds],
            "against_docs": n_old,
        }
        (state_dir / "index.json").write_text(json.dumps(info, indent=2, sort_keys=True))

    # -- apply --------------------------------------------------------------------------------

    def load_state(self, state_dir: Path) -> None:
        t = pq.read_table(state_dir / "clusters.parquet")
        clusters: dict[str, tuple[str, int, bool]] = {}
        for d, c, s, k in zip(
            t.column(schema.DOC_ID).to_pylist(),
            t.column(schema.DEDUP_CLUSTER).to_pylist(),
            t.column(schema.DEDUP_CLUSTER_SIZE).to_pylist(),
            t.column("keep").to_pylist(),
            strict=True,
        ):
            prev = clusters.get(d)
            # the same doc_id twice (the same record read twice): never drop both copies
            clusters[d] = (c, s, k or (prev is not None and prev[2]))
        self._clusters = clusters

    def process(self, table: pa.Table, ctx: StageContext) -> pa.Table:
        if table.num_rows == 0:
            return table
        ids = table.column(schema.DOC_ID).to_pylist()
        info = [self._clusters.get(d) for d in ids]
        cluster = [i[0] if i else d for i, d in zip(info, ids, strict=True)]
        size = np.array([i[1] if i else 1 for i in info], dtype=np.int32)
        keep = np.array([i[2] if i else True for i in info], dtype=bool)
        ctx.add("in_clusters", int((size > 1).sum()))
        table = _set(table, schema.DEDUP_CLUSTER, pa.array(cluster, pa.string()))
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


def _build_index(
    artifact_paths: list[Path], state_dir: Path, bands: int
) -> tuple[int, pa.ChunkedArray, np.ndarray]:
    """Stream artifacts into ``index.parquet`` + the flat shingle store; returns ids, scores.

    The index is written uncompressed and without dictionaries: band keys are uniform random.
    """
    from dedup.lsh import band_column

    band_cols = [band_column(b) for b in range(bands)]
    index_schema = pa.schema(
        [pa.field(schema.DOC_ID, pa.string())] + [pa.field(c, pa.uint64()) for c in band_cols]
    )
    ids: list[pa.Array | pa.ChunkedArray] = []
    scores: list[np.ndarray] = []
    offsets = [np.zeros(1, dtype=np.int64)]
    base = 0
    with (
        pq.ParquetWriter(
            state_dir / "index.parquet", index_schema, compression="none", use_dictionary=False
        ) as writer,
        open(state_dir / "shingles.u32", "wb") as store,
    ):
        for path in artifact_paths:
            pf = pq.ParquetFile(path)
            for rg in range(pf.num_row_groups):
                t = pf.read_row_group(rg)
                fsb = t.column(BANDS).combine_chunks()
                if fsb.type.byte_width != 8 * bands:
                    raise ValueError(
                        f"artifact {path} holds {fsb.type.byte_width // 8} bands, expected {bands}"
                        "; artifacts from another configuration? delete the run folder's _work"
                    )
                raw = fsb.buffers()[1]
                keys = np.frombuffer(raw, dtype=np.uint64)[
                    fsb.offset * bands : (fsb.offset + len(fsb)) * bands
                ].reshape(len(fsb), bands)
                index_cols = [t.column(schema.DOC_ID).cast(pa.string())]
                index_cols += [pa.array(keys[:, b]) for b in range(bands)]
                writer.write_table(pa.table(index_cols, schema=index_schema))
                # a copy: a slice would pin the whole row group (shingles included) in memory
                ids.append(pc.take(t.column(schema.DOC_ID), pa.array(np.arange(t.num_rows))))
                scores.append(
                    pc.fill_null(t.column(SCORE), float("-inf")).to_numpy().astype(np.float64)
                )
                sh = t.column(SHINGLES).combine_chunks()
                lo = sh.offsets.to_numpy()
                values = sh.values.to_numpy()[lo[0] : lo[-1]].astype(np.uint32, copy=False)
                store.write(values.tobytes())
                offsets.append(lo[1:] - lo[0] + base)
                base += int(lo[-1] - lo[0])
    np.save(state_dir / "shingle_offsets.npy", np.concatenate(offsets))
    id_arr = (
        pa.chunked_array([c.cast(pa.string()) for i in ids for c in getattr(i, "chunks", [i])])
        if ids
        else pa.chunked_array([], pa.string())
    )
    score_arr = np.concatenate(scores) if scores else np.zeros(0)
    return len(id_arr), id_arr, score_arr


def _open_store(state_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    offs = np.load(state_dir / "shingle_offsets.npy")
    path = state_dir / "shingles.u32"
    if path.stat().st_size == 0:
        return np.zeros(0, dtype=np.uint32), offs
    return np.memmap(path, dtype=np.uint32, mode="r"), offs


def _concat_old_stores(
    olds: list[Path], tmp: Path
) -> tuple[np.ndarray, np.ndarray, pa.ChunkedArray]:
    """One shingle store over all earlier indexes (memory-mapped when there is more than one)."""
    if not olds:
        return (
            np.zeros(1, dtype=np.uint32),
            np.zeros(1, dtype=np.int64),
            pa.chunked_array([], pa.string()),
        )
    ids = pa.chunked_array(
        [
            c.cast(pa.string())
            for o in olds
            for c in pq.read_table(o / "index.parquet", columns=[schema.DOC_ID]).column(0).chunks
        ],
        pa.string(),
    )
    if len(olds) == 1:
        flat, offs = _open_store(olds[0])
        return flat, offs, ids
    offsets = [np.zeros(1, dtype=np.int64)]
    base = 0
    with open(tmp / "old.u32", "wb") as out:
        for o in olds:
            flat, offs = _open_store(o)
            out.write(np.asarray(flat[offs[0] : offs[-1]]).tobytes())
            offsets.append(offs[1:] - offs[0] + base)
            base += int(offs[-1] - offs[0])
    flat_all = (
        np.memmap(tmp / "old.u32", dtype=np.uint32, mode="r") if base else np.zeros(1, np.uint32)
    )
    return flat_all, np.concatenate(offsets), ids


def _keep_policy(
    root: np.ndarray,
    n_new: int,
    new_ids: pa.ChunkedArray,
    old_ids: pa.ChunkedArray,
    scores: np.ndarray,
) -> pa.Table:
    """Cluster id, size and keep flag for the new docs that share a cluster with any other doc.

    The kept doc of a cluster: an earlier snapshot's doc if any (it is already published), else
    the highest score, else the lowest node id (earliest shard, then row).
    """
    n = root.shape[0]
    sizes = np.bincount(root, minlength=n)
    node_size = sizes[root]
    in_cluster = np.flatnonzero(node_size[:n_new] > 1)
    if in_cluster.size == 0:
        return pa.table(
            {
                schema.DOC_ID: pa.array([], pa.string()),
                schema.DEDUP_CLUSTER: pa.array([], pa.string()),
                schema.DEDUP_CLUSTER_SIZE: pa.array([], pa.int32()),
                "keep": pa.array([], pa.bool_()),
            }
        )
    members = np.flatnonzero(node_size > 1)
    is_old = (members >= n_new).astype(np.int8)
    score = np.full(members.size, -np.inf)
    new_mask = members < n_new
    score[new_mask] = scores[members[new_mask]]
    # sort by (root, old first, score desc, node asc); the first of each root is kept
    order = np.lexsort((members, -score, -is_old, root[members]))
    sorted_members = members[order]
    sorted_roots = root[sorted_members]
    first = np.ones(sorted_members.size, dtype=bool)
    first[1:] = sorted_roots[1:] != sorted_roots[:-1]
    keeper_of_root = np.full(n, -1, dtype=np.int64)
    keeper_of_root[sorted_roots[first]] = sorted_members[first]
    keepers = keeper_of_root[root[in_cluster]]
    all_ids = pa.chunked_array(new_ids.chunks + old_ids.chunks, pa.string())
    return pa.table(
        {
            schema.DOC_ID: new_ids.take(pa.array(in_cluster)),
            schema.DEDUP_CLUSTER: all_ids.take(pa.array(keepers)),
            schema.DEDUP_CLUSTER_SIZE: pa.array(node_size[in_cluster], pa.int32()),
            "keep": pa.array(keepers == in_cluster, pa.bool_()),
        }
    )
