"""filter.length on real documents: bounds in characters, reasons too_short / too_long."""

from __future__ import annotations

import pyarrow as pa
import pytest

from pipeline.filters.basic import LengthFilterStage
from pipeline.stage import StageContext


def test_length_bounds_and_reasons(raw_docs):
    texts = [d["text"] for d in raw_docs[:200]] + ["", "ünïcödé"]
    table = pa.table(
        {
            "doc_id": [str(i) for i in range(len(texts))],
            "text": pa.array(texts, pa.large_string()),
            "source": ["test"] * len(texts),
            "url": pa.array([None] * len(texts), pa.string()),
        }
    )
    ctx = StageContext("filter.length", keep_dropped=True)
    out = LengthFilterStage({"min_chars": 500, "max_chars": 20_000}).process(table, ctx)
    kept = out.column("text").to_pylist()
    assert all(500 <= len(t) <= 20_000 for t in kept)
    assert ctx.counters["dropped.too_short"] == sum(len(t) < 500 for t in texts) > 0
    assert ctx.counters["dropped.too_long"] == sum(len(t) > 20_000 for t in texts) > 0
    assert out.num_rows + ctx.counters["dropped"] == len(texts)
    # characters, not bytes: 7 characters, 11 bytes
    out = LengthFilterStage({"min_chars": 7, "max_chars": 7}).process(table, StageContext("x"))
    assert out.column("text").to_pylist() == ["ünïcödé"]


def test_config_is_validated():
    with pytest.raises(ValueError):
        LengthFilterStage({"max_chars": 0})
    with pytest.raises(ValueError):
        LengthFilterStage({"min_char": 10})
