"""Small generic filters."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from pipeline import schema
from pipeline.registry import register
from pipeline.stage import FilterStage, Resources, StageConfig


class LengthFilterConfig(StageConfig):
    min_chars: int = Field(1, ge=0, description="drop documents shorter than this (characters)")
    max_chars: int | None = Field(
        None, gt=0, description="drop documents longer than this; None = no limit"
    )


@register
class LengthFilterStage(FilterStage):
    kind: ClassVar[str] = "filter.length"
    Config = LengthFilterConfig
    inputs: ClassVar[tuple[str, ...]] = (schema.TEXT,)
    resources: ClassVar[Resources] = Resources(cpus=0.5, memory_gb=0.1)
    summary: ClassVar[str] = (
        "drop documents outside [min_chars, max_chars] (reasons too_short / too_long)"
    )
    config: LengthFilterConfig

    def keep(self, table: pa.Table) -> tuple[np.ndarray, list[str | None]]:
        n = pc.utf8_length(table.column(schema.TEXT)).to_numpy(zero_copy_only=False)
        short = n < self.config.min_chars
        long = (
            n > self.config.max_chars
            if self.config.max_chars is not None
            else np.zeros(len(n), bool)
        )
        reasons = np.where(short, "too_short", np.where(long, "too_long", None)).tolist()
        return ~(short | long), reasons
