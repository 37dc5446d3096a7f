"""Scorer + threshold through the real executor: score, then keep the top 60% of the corpus."""

from __future__ import annotations

import glob

import numpy as np
import pyarrow.parquet as pq
import pytest


def test_score_then_percentile_threshold_in_a_spec(tmp_path, fasttext_model, heldout_table):
    run = pytest.importorskip("pipeline.run")
    from pipeline.spec import PipelineSpec

    # two input shards so the percentile really spans shards
    n = heldout_table.num_rows
    src = tmp_path / "in"
    src.mkdir()
    cols = ["id", "text", "url", "label"]
    pq.write_table(heldout_table.select(cols).slice(0, n // 2), src / "a.parquet")
    pq.write_table(heldout_table.select(cols).slice(n // 2), src / "b.parquet")
    spec = PipelineSpec.from_dict({
        "name": "quality",
        "input": {"paths": [str(src)]},
        "output": {"dir": str(tmp_path / "out")},
        "stages": [
            {"kind": "classify.fasttext", "model_path": str(fasttext_model)},
            {"kind": "filter.threshold", "column": "quality.fasttext", "min_percentile": 40},
        ],
    })
    manifest = run.run_spec(spec, progress=False)
    files = sorted(glob.glob(str(tmp_path / "out" / "**" / "*.parquet"), recursive=True))
    files = [f for f in files if "/artifacts/" not in f and "/dropped/" not in f]
    out = pq.read_table(files) if len(files) == 1 else __import__("pyarrow").concat_tables(
        [pq.read_table(f) for f in files])
    assert "quality.fasttext" in out.column_names
    # the cutoff is the 40th percentile of the whole input: ~60% survive
    assert 0.5 * n <= out.num_rows <= 0.7 * n
    assert np.mean(out.column("label").to_numpy()) > 0.9  # what survives is good text
    state = list((tmp_path / "out").rglob("threshold.json"))
    assert state, "reduce state must persist with the snapshot"
    assert manifest  # the executor returned a manifest
