"""``filter.threshold``: keep or drop rows on any numeric score column.

Absolute bounds (``min``/``max``) are applied directly: then the stage is no barrier
(``needs_barrier`` is false) and the planner streams it like any filter. Percentile bounds
(``min_percentile``/``max_percentile``, 0–100) are computed over the *whole input*, so then
it is a barrier: ``map`` emits ``(doc_id, value)`` per shard, the reduce finds the exact
percentiles (``np.percentile``'s linear interpolation, bit for bit) without gathering the
values anywhere: partitions of shards return counts, then 4 rounds of merged 16-bit digit
histograms select the order statistics (:func:`pipeline.reduce.exact_quantiles`); the
cutoffs go to ``state_dir/threshold.json`` and ``process`` filters every shard with them.

Dropped rows get the reason ``below_threshold.<column>``, ``above_threshold.<column>`` or
``missing.<column>`` (null or NaN score, dropped unless ``keep_missing``). A reduce task holds
one shard's values (8 bytes per document) and a few 65,536-bin histograms; the driver holds
the histograms only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, model_validator

from pipeline import schema
from pipeline.registry import register
from pipeline.stage import BarrierStage, FilterStage, Resources, StageConfig, StageContext

STATE_FILE = "threshold.json"
_ARTIFACT_SCHEMA = pa.schema([pa.field(schema.DOC_ID, pa.string()), pa.field("value", pa.float64())])


class ThresholdConfig(StageConfig):
    column: str = Field(description="numeric column to threshold, e.g. quality.fasttext")
    min: float | None = Field(None, description="drop rows with value < min")
    max: float | None = Field(None, description="drop rows with value > max")
    min_percentile: float | None = Field(
        None, ge=0, le=100,
        description="drop rows below this percentile of the whole input (10 = drop lowest 10%)",
    )
    max_percentile: float | None = Field(
        None, ge=0, le=100,
        description="drop rows above this percentile of the whole input (e.g. perplexity 90)",
    )
    keep_missing: bool = Field(False, description="keep rows whose value is null/NaN")

    @model_validator(mode="after")
    def _check(self) -> ThresholdConfig:
        if all(v is None for v in (self.min, self.max, self.min_percentile, self.max_percentile)):
            raise ValueError(
                "filter.threshold needs at least one of min, max, min_percentile, max_percentile"
            )
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        if (self.min_percentile is not None and self.max_percentile is not None
                and self.min_percentile > self.max_percentile):
            raise ValueError(
                f"min_percentile ({self.min_percentile}) is greater than max_percentile "
                f"({self.max_percentile})"
            )
        return self

    @property
    def needs_percentiles(self) -> bool:
        return self.min_percentile is not None or self.max_percentile is not None


def _finite(path: str) -> np.ndarray:
    from pipeline.reduce import read_parquet

    v = read_parquet(path, columns=["value"]).column("value").to_numpy()
    return v[np.isfinite(v)]


def _count_finite(paths: list[str]) -> int:
    return sum(int(_finite(p).size) for p in paths)


def _histograms(paths: list[str], prefixes: list[tuple[int, int]]) -> np.ndarray:
    from pipeline.reduce import digit_histograms, sortable_bits

    out = None
    for p in paths:
        h = digit_histograms(sortable_bits(_finite(p)), prefixes)
        out = h if out is None else out + h
    assert out is not None
    return out


def _values(table: pa.Table, column: str) -> np.ndarray:
    if column not in table.column_names:
        raise KeyError(
            f"filter.threshold: column {column!r} not in the table (columns: {table.column_names});"
            f" run the scorer that writes it first"
        )
    col = table.column(column)
    if not (pa.types.is_floating(col.type) or pa.types.is_integer(col.type)
            or pa.types.is_boolean(col.type)):
        raise TypeError(f"filter.threshold: column {column!r} is {col.type}, not numeric")
    return np.asarray(pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)


@register
class ThresholdFilter(BarrierStage, FilterStage):
    """Drops rows whose score is outside absolute or corpus-percentile bounds."""

    kind = "filter.threshold"
    Config = ThresholdConfig
    inputs = (schema.DOC_ID,)
    outputs = ()
    resources = Resources(cpus=1.0, memory_gb=1.0)
    summary = "keep rows whose score column is within absolute or whole-input percentile bounds"
    remote_state = True  # load_state reads through pipeline.storage

    config: ThresholdConfig

    def __init__(self, config: Any = None, name: str | None = None):
        super().__init__(config, name)
        self.cutoffs: dict[str, float | None] | None = None
        if not self.config.needs_percentiles:
            self.cutoffs = {"min": self.config.min, "max": self.config.max}

    @property
    def needs_barrier(self) -> bool:
        return self.config.needs_percentiles

    # -- barrier -------------------------------------------------------------------------
    def map(self, table: pa.Table, ctx: StageContext) -> pa.Table:
        if not self.config.needs_percentiles:
            return _ARTIFACT_SCHEMA.empty_table()
        return pa.table(
            {schema.DOC_ID: table.column(schema.DOC_ID).cast(pa.string()),
             "value": pa.array(_values(table, self.config.column), pa.float64())},
            schema=_ARTIFACT_SCHEMA,
        )

    def reduce_plan(self, rc: Any) -> Any:
        from pipeline.reduce import ReduceTask, exact_quantiles, shard_groups

        cfg = self.config
        lo, hi = cfg.min, cfg.max
        n = 0
        pct: dict[str, float] = {}
        if cfg.needs_percentiles:
            groups = [[p for _, p in g] for g in shard_groups(rc)]
            counts = yield [ReduceTask(_count_finite, (g,)) for g in groups]
            n = int(sum(counts))
            if n == 0:
                raise ValueError(
                    f"filter.threshold: no finite values of {cfg.column!r} in the whole input; "
                    f"cannot compute percentiles"
                )
            qs = [q / 100.0 for q in (cfg.min_percentile, cfg.max_percentile) if q is not None]
            got = yield from exact_quantiles(
                n, qs, lambda prefixes: [ReduceTask(_histograms, (g, prefixes)) for g in groups])
            it = iter(got)
            if cfg.min_percentile is not None:
                pct["min"] = next(it)
                lo = pct["min"] if lo is None else max(lo, pct["min"])
            if cfg.max_percentile is not None:
                pct["max"] = next(it)
                hi = pct["max"] if hi is None else min(hi, pct["max"])
        from pipeline.reduce import join, put_json

        state = {"column": cfg.column, "min": lo, "max": hi, "n_values": n,
                 "percentile_cutoffs": pct, "config": cfg.model_dump()}
        put_json(join(rc.state_dir, STATE_FILE), json.dumps(state, indent=2))

    def load_state(self, state_dir: Path) -> None:
        from pipeline import storage

        path = storage.as_loc(state_dir) / STATE_FILE
        if not storage.exists(path):
            raise FileNotFoundError(f"filter.threshold: no state at {path}; reduce did not run")
        state = storage.read_json(path)
        if state["column"] != self.config.column:
            raise ValueError(
                f"filter.threshold: state at {path} is for column {state['column']!r}, "
                f"config says {self.config.column!r}"
            )
        self.cutoffs = {"min": state["min"], "max": state["max"]}

    # -- apply ---------------------------------------------------------------------------
    def keep(self, table: pa.Table) -> tuple[np.ndarray, list[str | None]]:
        if self.cutoffs is None:
            raise RuntimeError(
                "filter.threshold with percentile bounds needs its reduce state: call "
                "load_state(state_dir) before process (the executor does this)"
            )
        col = self.config.column
        v = _values(table, col)
        lo, hi = self.cutoffs["min"], self.cutoffs["max"]
        missing = ~np.isfinite(v)
        with np.errstate(invalid="ignore"):
            below = (v < lo) if lo is not None else np.zeros(len(v), bool)
            above = (v > hi) if hi is not None else np.zeros(len(v), bool)
        below &= ~missing
        above &= ~missing
        mask = ~(below | above)
        if not self.config.keep_missing:
            mask &= ~missing
        reasons: list[str | None] = [None] * len(v)
        for i in np.flatnonzero(~mask):
            reasons[i] = (f"missing.{col}" if missing[i]
                          else f"below_threshold.{col}" if below[i] else f"above_threshold.{col}")
        return mask, reasons
