"""filter.threshold: absolute bounds, whole-input percentiles through map/reduce/apply."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from classifiers.fasttext_model import FastTextScorer
from classifiers.threshold import ThresholdFilter
from pipeline import registry
from pipeline.stage import BarrierStage, StageContext


@pytest.fixture(scope="module")
def scored(fasttext_model, heldout_table) -> pa.Table:
    stage = FastTextScorer({"model_path": str(fasttext_model)})
    return stage.process(heldout_table, StageContext("ft"))


def test_registered_as_barrier():
    assert "classifiers.threshold" in registry.STAGE_MODULES
    cls = registry._REGISTRY["filter.threshold"]
    assert cls is ThresholdFilter and issubclass(cls, BarrierStage)


def test_absolute_threshold_needs_no_reduce(scored):
    stage = ThresholdFilter({"column": "quality.fasttext", "min": 0.5})
    ctx = StageContext("thr")
    out = stage.process(scored, ctx)
    s = scored.column("quality.fasttext").to_numpy()
    assert out.num_rows == int((s >= 0.5).sum())
    assert ctx.counters["dropped.below_threshold.quality.fasttext"] == int((s < 0.5).sum())
    # on held-out quality_train, what is kept is overwhelmingly label 1
    assert np.mean(out.column("label").to_numpy()) > 0.95
    assert stage.map(scored, ctx).num_rows == 0


def test_percentile_over_whole_input_across_shards(scored, tmp_path):
    stage = ThresholdFilter({"column": "quality.fasttext", "min_percentile": 30})
    n = scored.num_rows
    shards = [scored.slice(0, n // 3), scored.slice(n // 3)]
    paths = []
    for i, shard in enumerate(shards):
        art = stage.map(shard, StageContext("thr", shard_index=i))
        assert art.column_names == ["doc_id", "value"] and art.num_rows == shard.num_rows
        p = tmp_path / f"{i:05d}.parquet"
        pq.write_table(art, p)
        paths.append(p)
    state = tmp_path / "state"
    stage.reduce(paths, state)
    saved = json.loads((state / "threshold.json").read_text())
    values = scored.column("quality.fasttext").to_numpy().astype(np.float64)
    assert saved["min"] == pytest.approx(np.percentile(values, 30))
    assert saved["n_values"] == n

    fresh = ThresholdFilter({"column": "quality.fasttext", "min_percentile": 30})
    with pytest.raises(RuntimeError, match="load_state"):
        fresh.process(shards[0], StageContext("thr"))
    fresh.load_state(state)
    kept = sum(fresh.process(s, StageContext("thr")).num_rows for s in shards)
    # percentile cut is global: ~70% of the whole input survives, not 70% of each shard
    assert kept == int((values >= saved["min"]).sum())
    assert 0.6 * n <= kept <= 0.75 * n


def test_missing_values_and_reasons():
    t = pa.table({
        "doc_id": ["a", "b", "c", "d"], "text": ["w"] * 4, "source": ["s"] * 4,
        "url": [None] * 4, "quality.x": pa.array([0.1, None, float("nan"), 0.9], pa.float32()),
    })
    ctx = StageContext("thr", keep_dropped=True)
    out = ThresholdFilter({"column": "quality.x", "max": 0.5}).process(t, ctx)
    assert out.column("doc_id").to_pylist() == ["a"]
    reasons = ctx.dropped[0].column("drop_reason").to_pylist()
    assert reasons == ["missing.quality.x", "missing.quality.x", "above_threshold.quality.x"]
    out = ThresholdFilter({"column": "quality.x", "max": 0.5, "keep_missing": True}).process(
        t, StageContext("thr"))
    assert out.column("doc_id").to_pylist() == ["a", "b", "c"]


def test_config_errors_name_the_problem(scored):
    with pytest.raises(ValidationError, match="at least one of"):
        ThresholdFilter({"column": "quality.x"})
    with pytest.raises(ValidationError, match="greater than max"):
        ThresholdFilter({"column": "quality.x", "min": 2, "max": 1})
    with pytest.raises(KeyError, match="quality.nope"):
        ThresholdFilter({"column": "quality.nope", "min": 0}).process(scored, StageContext("t"))
    with pytest.raises(TypeError, match="not numeric"):
        ThresholdFilter({"column": "text", "min": 0}).process(scored, StageContext("t"))
