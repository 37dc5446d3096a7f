"""Exact dedup by normalized content hash, as a partitioned barrier over the whole corpus.

- map: per shard, ``(doc_id, hash, shard, row)`` where ``hash`` is xxh3-64 of the text after
  normalization (NFKC, lower case, whitespace runs collapsed, stripped), so documents that
  differ only in case or spacing count as one;
- reduce, step 1 (one task per hash range): the rows whose hash falls in the task's range
  (read from every artifact, filtered as they stream), sorted by (hash, shard, row): the first
  row of each hash is kept, every other row is dropped; the task writes its drops as
  ``(shard, doc_id, keep_first)`` sorted by shard;
- reduce, step 2 (one task per group of shards): shard *i*'s drops from every range, sorted by
  ``doc_id`` -> ``state/<name>/shards/part-<i>.parquet``;
- apply: shard *i* loads only its part and drops rows whose ``doc_id`` is listed, except the
  first occurrence when ``keep_first`` (the same record read twice in one shard, kept once);
  ``drop_reason = exact_duplicate``.

Memory: a step-1 task holds ~40 bytes per document of its hash range; apply holds the listed
duplicates of one shard. The driver holds neither.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path
from typing import ClassVar

import numpy as np
import pyarrow as pa
import xxhash
from pydantic import Field

from pipeline import schema
from pipeline.registry import register
from pipeline.stage import BarrierStage, Resources, StageConfig, StageContext

_WS = re.compile(r"\s+")


def normalize_for_hash(text: str, lowercase: bool = True) -> str:
    text = unicodedata.normalize("NFKC", text)
    if lowercase:
        text = text.lower()
    return _WS.sub(" ", text).strip()


class ExactDedupConfig(StageConfig):
    lowercase: bool = Field(True, description="fold case before hashing")
    normalize: bool = Field(True, description="NFKC + collapse whitespace before hashing")


@register
class ExactDedupStage(BarrierStage):
    kind = "dedup.exact"
    preload = ("polars",)
    Config = ExactDedupConfig
    inputs = (schema.DOC_ID, schema.TEXT)
    outputs = ()
    resources = Resources(cpus=1.0, memory_gb=1.0)
    summary = "drop documents whose normalized text was already seen (keeps the earliest)"
    remote_state = True  # load_state reads through pipeline.storage
    config: ExactDedupConfig

    ARTIFACT_SCHEMA: ClassVar[pa.Schema] = pa.schema(
        [("doc_id", pa.string()), ("hash", pa.uint64()), ("shard", pa.int32()), ("row", pa.int64())]
    )

    def __init__(self, config: ExactDedupConfig | dict | None = None, name: str | None = None):
        super().__init__(config, name)
        from pipeline.reduce import ShardStateCache

        self._state = ShardStateCache()
        self._seen_in_shard: tuple[int, set[str]] = (-1, set())

    def _hash(self, text: str) -> int:
        if self.config.normalize:
            text = normalize_for_hash(text, self.config.lowercase)
        return xxhash.xxh3_64_intdigest(text.encode("utf-8", "surrogatepass"))

    def map(self, table: pa.Table, ctx: StageContext) -> pa.Table:
        start = int(ctx.counters.get("rows_seen", 0))
        n = table.num_rows
        ctx.add("rows_seen", n)
        hashes = np.fromiter((self._hash(t) for t in table.column(schema.TEXT).to_pylist()), dtype=np.uint64, count=n)
        return pa.table(
            {
                "doc_id": table.column(schema.DOC_ID).cast(pa.string()),
                "hash": pa.array(hashes, pa.uint64()),
                "shard": pa.array(np.full(n, ctx.shard_index, dtype=np.int32)),
                "row": pa.array(np.arange(start, start + n, dtype=np.int64)),
            },
            schema=self.ARTIFACT_SCHEMA,
        )

    def reduce_plan(self, rc):  # type: ignore[no-untyped-def]
        from pipeline.reduce import ReduceTask, join, put_json, shard_groups

        paths = [p for _, p in rc.artifacts]
        out = rc.scratch_dir("ranges")
        P = rc.partitions
        yield [ReduceTask(_range_drops, (paths, p, P, f"{out}/range-{p:05d}.parquet")) for p in range(P)]
        ranges = [f"{out}/range-{p:05d}.parquet" for p in range(P)]
        yield [ReduceTask(_collect_shards, (ranges, [i for i, _ in g], rc.state_dir)) for g in shard_groups(rc)]
        put_json(join(rc.state_dir, "exact.json"), '{"format": "assay.exact-state/2"}\n')

    def load_state(self, state_dir: Path) -> None:
        self._state.open(state_dir)

    def process(self, table: pa.Table, ctx: StageContext) -> pa.Table:
        if table.num_rows == 0:
            return table
        if self._seen_in_shard[0] != ctx.shard_index:
            self._seen_in_shard = (ctx.shard_index, set())
        seen = self._seen_in_shard[1]
        ids = table.column(schema.DOC_ID)
        idx = self._state.lookup(ids, ctx.shard_index)
        hit = np.flatnonzero(idx >= 0)
        if hit.size == 0:
            return table
        st = self._state.table(ctx.shard_index)
        assert st is not None
        keep_first = st.column("keep_first").to_numpy(zero_copy_only=False)
        keep = np.ones(table.num_rows, dtype=bool)
        hit_ids = ids.take(pa.array(hit)).to_pylist()
        for i, d in zip(hit.tolist(), hit_ids, strict=True):
            if keep_first[idx[i]] and d not in seen:
                seen.add(d)
            else:
                keep[i] = False
        ctx.drop(table.filter(pa.array(~keep)), "exact_duplicate")
        return table.filter(pa.array(keep))


_DROP_SCHEMA = pa.schema([("shard", pa.int32()), ("doc_id", pa.string()), ("keep_first", pa.bool_())])


def _range_drops(paths: list[str], part: int, partitions: int, out: str) -> int:
    """Step 1: the drops among rows whose hash lies in range ``part`` (of ``partitions``)."""
    import polars as pl

    from pipeline.reduce import hash_partition, parquet_file, write_scratch_table, write_table

    pieces = []
    for path in paths:
        pf = parquet_file(path)
        for rg in range(pf.num_row_groups):
            t = pf.read_row_group(rg)
            if partitions > 1:
                t = t.filter(pa.array(hash_partition(t.column("hash").to_numpy(), partitions) == part))
            if t.num_rows:
                pieces.append(t)
    if not pieces:
        write_table(out, _DROP_SCHEMA.empty_table())
        return 0
    df = pl.from_arrow(pa.concat_tables(pieces)).sort(["hash", "shard", "row"])
    del pieces
    first = pl.col("hash") != pl.col("hash").shift(1)
    df = df.with_columns(
        first.fill_null(True).alias("first"),
        pl.col("doc_id").first().over("hash").alias("k_doc"),
        pl.col("shard").first().over("hash").alias("k_shard"),
    )
    drops = (
        df.filter(~pl.col("first"))
        .select(
            pl.col("shard"),
            pl.col("doc_id"),
            ((pl.col("doc_id") == pl.col("k_doc")) & (pl.col("shard") == pl.col("k_shard"))).alias("keep_first"),
        )
        .unique(subset=["shard", "doc_id"], keep="first")
        .sort(["shard", "doc_id"])
    )
    t = drops.to_arrow().cast(_DROP_SCHEMA)
    # sorted by shard in row groups of 64k rows: step 2 reads only the groups of its shards
    write_scratch_table(out, t, row_group_size=65536)
    return t.num_rows


def _collect_shards(ranges: list[str], shards: list[int], state_dir: str) -> None:
    """Step 2: each shard's drops from every hash range, sorted by doc_id, as its apply state."""
    from pipeline.reduce import read_parquet, shard_state_path, write_table

    for i in shards:
        parts = [read_parquet(r, filters=[("shard", "=", i)]) for r in ranges]
        t = pa.concat_tables(parts).select(["doc_id", "keep_first"])
        if t.num_rows:
            t = t.sort_by("doc_id")
            write_table(shard_state_path(state_dir, i), t)
