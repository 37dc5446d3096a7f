"""Exact dedup by normalized content hash, as a barrier over the whole corpus.

- map: per shard, ``(doc_id, hash, shard, row)`` where ``hash`` is xxh3-64 of the text after
  normalization (NFKC, lower case, whitespace runs collapsed, stripped), so documents that
  differ only in case or spacing count as one;
- reduce (Polars): per hash, the earliest document (lowest shard, then row) is kept; the
  doc_ids to drop go to ``state/<name>/drop.parquet``;
- apply: drop rows whose ``doc_id`` is in that set (``drop_reason = exact_duplicate``).

Memory in reduce is ~40 bytes per document (1M docs ≈ 40 MB); apply holds only the duplicates.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path
from typing import ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
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
    Config = ExactDedupConfig
    inputs = (schema.DOC_ID, schema.TEXT)
    outputs = ()
    resources = Resources(cpus=1.0, memory_gb=1.0)
    summary = "drop documents whose normalized text was already seen (keeps the earliest)"
    config: ExactDedupConfig

    ARTIFACT_SCHEMA: ClassVar[pa.Schema] = pa.schema(
        [("doc_id", pa.string()), ("hash", pa.uint64()), ("shard", pa.int32()), ("row", pa.int64())]
    )

    def __init__(self, config: ExactDedupConfig | dict | None = None, name: str | None = None):
        super().__init__(config, name)
        self._drop: set[str] = set()
        self._multi: dict[str, int] = {}
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

    def reduce(self, artifact_paths: list[Path], state_dir: Path) -> None:
        import polars as pl

        if artifact_paths:
            df = pl.concat([pl.read_parquet(p) for p in artifact_paths])
        else:
            df = pl.DataFrame(schema={"doc_id": pl.Utf8, "hash": pl.UInt64, "shard": pl.Int32, "row": pl.Int64})
        df = df.sort(["hash", "shard", "row"])
        keeper = df.group_by("hash", maintain_order=True).agg(
            pl.col("doc_id").first().alias("k_doc"), pl.col("shard").first().alias("k_shard")
        )
        df = df.join(keeper, on="hash")
        # documents of another doc_id than their group's keeper: drop everywhere
        drop = df.filter(pl.col("doc_id") != pl.col("k_doc")).select("doc_id", "k_doc").unique(subset="doc_id", keep="first")
        # the same doc_id more than once (same identity and text): keep its first row only
        multi = (
            df.filter(pl.col("doc_id") == pl.col("k_doc"))
            .group_by("doc_id").agg(pl.len().alias("n"), pl.col("k_shard").first())
            .filter(pl.col("n") > 1).select("doc_id", "k_shard")
        )
        pq.write_table(drop.sort("doc_id").to_arrow(), state_dir / "drop.parquet")
        pq.write_table(multi.sort("doc_id").to_arrow(), state_dir / "multi.parquet")

    def load_state(self, state_dir: Path) -> None:
        self._drop = set(pq.read_table(state_dir / "drop.parquet", columns=["doc_id"]).column(0).to_pylist())
        multi = pq.read_table(state_dir / "multi.parquet")
        self._multi = dict(zip(multi.column("doc_id").to_pylist(), multi.column("k_shard").to_pylist(), strict=True))

    def process(self, table: pa.Table, ctx: StageContext) -> pa.Table:
        if table.num_rows == 0:
            return table
        if self._seen_in_shard[0] != ctx.shard_index:
            self._seen_in_shard = (ctx.shard_index, set())
        seen = self._seen_in_shard[1]
        keep = np.ones(table.num_rows, dtype=bool)
        for i, d in enumerate(table.column(schema.DOC_ID).to_pylist()):
            if d in self._drop:
                keep[i] = False
            elif d in self._multi:
                if self._multi[d] != ctx.shard_index or d in seen:
                    keep[i] = False
                seen.add(d)
        if keep.all():
            return table
        ctx.drop(table.filter(pa.array(~keep)), "exact_duplicate")
        return table.filter(pa.array(keep))
