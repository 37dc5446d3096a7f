"""``dedup.softdedup``: SoftDedup reweighting (He et al., ACL 2024) — down-weight, don't delete.

SoftDedup fits an n-gram model on the corpus, scores each sample's *commonness* ``p`` and
samples it with weight ``W ∝ 1/p``: text that recurs in many documents (licence headers,
boilerplate, repeated records) is seen less often, unique text more often, and nothing is lost.

Our model and why:

- **Tokens**: the words of :mod:`dedup.signature` (lower-cased ASCII, non-ASCII runs kept), as
  32-bit ids; **4-grams** of consecutive words.
- **Counts**: a count-min sketch (``depth`` rows x ``2**width_log2`` uint32 counters, default
  2 x 2^24 = 128 MB); a 4-gram's count is the minimum over its rows, so hash collisions can only
  over-count, and the second row cuts that over-count sharply. Memory is fixed whatever the
  corpus size; the exact count of every 4-gram of a 50M-word corpus would not be.
- **Commonness**: ``p(doc)`` = geometric mean over the doc's 4-grams of the smoothed 4-gram
  probability ``(count + k) / (N + k * width)``. Then ``1/p`` ∝ 1 / geometric-mean count: a
  document whose every 4-gram occurs 100 times in the corpus (100 copies) weighs ~1/100 of a
  unique one, so its copies together weigh about what one copy would. Near-copies fall in
  between, in proportion to how much text they share with the rest of the corpus.
- **Weights**: ``1/p`` normalized to mean 1 over the documents that have 4-grams, then clipped
  to ``[min_weight, max_weight]`` (default 0.05..20), written to ``weight``. Documents with fewer
  than 4 words get weight 1. With ``cluster_alpha > 0`` and a ``dedup.cluster_size`` column
  from an earlier ``dedup.minhash`` (mode annotate), members of near-duplicate clusters are
  further multiplied by ``cluster_size ** -cluster_alpha`` before normalization.

Phases: map = each doc's word ids (artifact keyed by ``doc_id``); reduce = pass 1 counts all
4-grams into the sketch, pass 2 scores every document from its artifact (streamed, row group by
row group) and writes ``weights.parquet``; apply = look the weight up by ``doc_id``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import Field, model_validator

from pipeline import schema
from pipeline.registry import register
from pipeline.stage import BarrierStage, Resources, StageConfig, StageContext

WORDS = "words"
CLUSTER_SIZE = "cluster_size"
COMMONNESS = "softdedup.commonness"


class SoftDedupConfig(StageConfig):
    """Settings of ``dedup.softdedup`` (4-gram count-min sketch, weights clipped to 0.05..20)."""

    ngram: int = Field(4, ge=1, le=8, description="words per n-gram of the commonness model")
    width_log2: int = Field(24, ge=10, le=30, description="log2 of counters per sketch row")
    depth: int = Field(2, ge=1, le=4, description="count-min sketch rows")
    smoothing: float = Field(
        1.0, gt=0.0, description="additive smoothing k of the n-gram probability"
    )
    min_weight: float = Field(0.05, gt=0.0, description="lower clip of the normalized weight")
    max_weight: float = Field(20.0, gt=0.0, description="upper clip of the normalized weight")
    cluster_alpha: float = Field(
        0.0, ge=0.0, description="also multiply by dedup.cluster_size ** -cluster_alpha (0 = off)"
    )

    @model_validator(mode="after")
    def _clip(self) -> SoftDedupConfig:
        if self.min_weight >= self.max_weight:
            raise ValueError(
                f"min_weight={self.min_weight} must be below max_weight={self.max_weight}"
            )
        return self


_KERNELS: dict[str, object] = {}


def _kernels() -> dict[str, object]:
    if _KERNELS:
        return _KERNELS
    from dedup import kernels as kn

    _KERNELS.update(count=kn.count, mean_log_count=kn.mean_log_count)
    return _KERNELS


@register
class SoftDedupStage(BarrierStage):
    """Per-document sampling weight ∝ 1/commonness under a corpus 4-gram model (see module)."""

    kind = "dedup.softdedup"
    Config = SoftDedupConfig
    inputs = (schema.DOC_ID, schema.TEXT)
    outputs = (schema.WEIGHT, COMMONNESS)
    resources = Resources(cpus=1.0, memory_gb=1.0)
    summary = (
        "SoftDedup: weight = 1/commonness under a corpus 4-gram count-min model (mean 1, clipped)"
    )

    config: SoftDedupConfig

    def __init__(self, config: StageConfig | dict[str, Any] | None = None, name: str | None = None):
        super().__init__(config, name)
        self._weights: dict[str, tuple[float, float]] = {}

    def setup(self) -> None:
        from dedup.signature import warm_up

        warm_up()
        _kernels()

    def map(self, table: pa.Table, ctx: StageContext) -> pa.Table:
        from dedup.signature import word_ids

        flat, offsets = word_ids(table.column(schema.TEXT))
        if schema.DEDUP_CLUSTER_SIZE in table.column_names:
            size = pc.fill_null(table.column(schema.DEDUP_CLUSTER_SIZE), 1).cast(pa.int32())
        else:
            size = pa.array(np.ones(table.num_rows, dtype=np.int32))
        ctx.add("words", int(flat.size))
        return pa.table(
            {
                schema.DOC_ID: table.column(schema.DOC_ID).combine_chunks(),
                WORDS: pa.LargeListArray.from_arrays(
                    pa.array(offsets, pa.int64()), pa.array(flat, pa.uint32())
                ),
                CLUSTER_SIZE: size,
            }
        )

    def reduce(self, artifact_paths: list[Path], state_dir: Path) -> None:
        k = _kernels()
        c = self.config
        n = c.ngram
        table = np.zeros((c.depth, 1 << c.width_log2), dtype=np.uint32)
        total = 0
        for words, offsets, _t in _iter_words(artifact_paths):
            total += k["count"](words, offsets, n, table)  # type: ignore[operator]
        # log p = mean log((count + k) / (N + k * width)); the constant cancels in normalization
        log_norm = float(np.log(total + c.smoothing * (1 << c.width_log2))) if total else 0.0
        ids: list[pa.Array] = []
        logp: list[np.ndarray] = []
        sizes: list[np.ndarray] = []
        for words, offsets, t in _iter_words(artifact_paths):
            out = np.empty(len(offsets) - 1, dtype=np.float64)
            grams = np.empty(len(offsets) - 1, dtype=np.int64)
            k["mean_log_count"](words, offsets, n, table, c.smoothing, out, grams)  # type: ignore[operator]
            ids.append(t.column(schema.DOC_ID).combine_chunks().cast(pa.string()))
            logp.append(out - log_norm)
            sizes.append(t.column(CLUSTER_SIZE).to_numpy().astype(np.float64))
        del table
        lp = np.concatenate(logp) if logp else np.zeros(0)
        size = np.concatenate(sizes) if sizes else np.zeros(0)
        has = ~np.isnan(lp)
        # weight ∝ 1/p, computed in log space relative to the median to stay finite
        log_w = np.zeros_like(lp)
        if has.any():
            log_w[has] = -(lp[has] - np.median(lp[has]))
            log_w[has] -= c.cluster_alpha * np.log(np.maximum(size[has], 1.0))
        w = np.ones_like(lp)
        if has.any():
            raw = np.exp(np.clip(log_w[has], -700, 700))
            w[has] = np.clip(raw / raw.mean(), c.min_weight, c.max_weight)
        pq.write_table(
            pa.table(
                {
                    schema.DOC_ID: pa.chunked_array(ids, pa.string())
                    if ids
                    else pa.array([], pa.string()),
                    schema.WEIGHT: pa.array(w, pa.float64()),
                    COMMONNESS: pa.array(
                        np.where(has, np.exp(lp), np.nan), pa.float64(), from_pandas=True
                    ),
                }
            ),
            state_dir / "weights.parquet",
        )
        info = {
            "ngram": n,
            "sketch": {
                "depth": c.depth,
                "width": 1 << c.width_log2,
                "bytes": int(c.depth * 4 << c.width_log2),
            },
            "grams": int(total),
            "docs": int(lp.size),
            "docs_without_grams": int((~has).sum()),
            "weight_mean": float(w.mean()) if w.size else None,
            "weight_quantiles": {
                q: float(np.quantile(w, float(q))) for q in ("0.01", "0.1", "0.5", "0.9", "0.99")
            }
            if w.size
            else {},
            "clipped_low": int((w <= c.min_weight).sum()),
            "clipped_high": int((w >= c.max_weight).sum()),
        }
        (state_dir / "softdedup.json").write_text(json.dumps(info, indent=2, sort_keys=True))

    def load_state(self, state_dir: Path) -> None:
        t = pq.read_table(state_dir / "weights.parquet")
        self._weights = dict(
            zip(
                t.column(schema.DOC_ID).to_pylist(),
                zip(
                    t.column(schema.WEIGHT).to_pylist(),
                    t.column(COMMONNESS).to_pylist(),
                    strict=True,
                ),
                strict=True,
            )
        )

    def process(self, table: pa.Table, ctx: StageContext) -> pa.Table:
        if table.num_rows == 0:
            return table
        got = [self._weights.get(d) for d in table.column(schema.DOC_ID).to_pylist()]
        missing = sum(g is None for g in got)
        if missing:
            ctx.add("weight_missing", missing)
        w = np.array([g[0] if g else 1.0 for g in got], dtype=np.float64)
        cm = pa.array([g[1] if g else None for g in got], pa.float64())
        if schema.WEIGHT in table.column_names:
            w = w * pc.fill_null(pc.cast(table.column(schema.WEIGHT), pa.float64()), 1.0).to_numpy()
        for name, values in ((schema.WEIGHT, pa.array(w, pa.float64())), (COMMONNESS, cm)):
            if name in table.column_names:
                table = table.set_column(table.column_names.index(name), name, values)
            else:
                table = table.append_column(name, values)
        return table


def _iter_words(paths: list[Path]):  # type: ignore[no-untyped-def]
    """(flat uint32 word ids, int64 offsets, row-group table) per artifact row group."""
    for path in paths:
        pf = pq.ParquetFile(path)
        for rg in range(pf.num_row_groups):
            t = pf.read_row_group(rg)
            col = t.column(WORDS).combine_chunks()
            offs = col.offsets.to_numpy().astype(np.int64)
            words = col.values.to_numpy().astype(np.uint32, copy=False)
            yield words, offs, t
