"""Contract: every registered stage runs on a real batch and produces its declared columns."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from pipeline.registry import all_stages
from pipeline.stage import BarrierStage, FilterStage, ScoreStage, StageContext

#: stages that need a model trained for them or an input column the fixture lacks
NEEDS_SETUP = {"classify.fasttext", "classify.perplexity", "classify.embedding", "filter.threshold",
               "filter.toxicity", "extract.html", "filter.lang", "synth.generate",
               "filter.decontaminate"}


@pytest.fixture(scope="module")
def batch(raw_docs) -> pa.Table:
    from pipeline.schema import make_doc_id

    docs = raw_docs[:64]
    return pa.table({
        "doc_id": [make_doc_id(str(i), d["text"]) for i, d in enumerate(docs)],
        "text": pa.array([d["text"] for d in docs], pa.large_string()),
        "source": ["pretrain_raw"] * len(docs),
        "url": [d.get("url") for d in docs],
    })


def test_registry_has_the_backbone_stages():
    kinds = set(all_stages())
    assert {"extract.html", "lid.fasttext", "filter.lang", "filter.gopher_quality", "filter.gopher_repetition",
            "filter.c4", "filter.fineweb", "pii.redact", "dedup.exact"} <= kinds


@pytest.mark.parametrize("kind", sorted(k for k in all_stages() if k not in NEEDS_SETUP))
def test_stage_contract(kind: str, batch: pa.Table, tmp_path: Path):
    cls = all_stages()[kind]
    stage = cls()
    stage.setup()
    ctx = StageContext(kind)
    if isinstance(stage, BarrierStage):
        art = stage.map(batch, ctx)
        assert isinstance(art, pa.Table)
        p = tmp_path / "a.parquet"
        import pyarrow.parquet as pq

        pq.write_table(art, p)
        stage.reduce([p], tmp_path)
        stage.load_state(tmp_path)
    out = stage.process(batch, ctx)
    assert isinstance(out, pa.Table)
    for col in stage.output_columns():
        assert col in out.column_names, f"{kind} declared output {col!r} but did not write it"
    for col in batch.column_names:
        assert col in out.column_names, f"{kind} lost column {col!r}"
    dropped = int(ctx.counters.get("dropped", 0))
    assert out.num_rows + dropped == batch.num_rows, f"{kind}: rows in != out + dropped"
    if isinstance(stage, ScoreStage):
        assert out.num_rows == batch.num_rows
    if isinstance(stage, FilterStage):
        assert set(out.column("doc_id").to_pylist()) <= set(batch.column("doc_id").to_pylist())
