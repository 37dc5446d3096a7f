"""Contract: EVERY registered stage runs on a real batch and produces its declared columns.

The parametrization iterates the registry itself, so a stage added later is covered the day it
is registered. A stage that cannot run on the default batch with its default config gets a
*recipe* below (a small real model trained here, or the input column it needs); a stage that
cannot run in this test at all (an LLM engine) is listed in ``NOT_HERE`` with the reason and
the test that covers it instead. ``test_every_stage_is_covered`` fails on names that are not
registered, so neither list can name a stage that does not exist.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.registry import all_stages
from pipeline.stage import BarrierStage, FilterStage, ScoreStage, StageContext

REPO = Path(__file__).resolve().parents[2]
QUALITY = REPO.parent / "shared" / "data" / "quality_train.jsonl.zst"

#: kind -> (why it cannot run here, the test file that covers it instead). Keep it short.
NOT_HERE: dict[str, tuple[str, str]] = {
    "synth.generate": ("needs an LLM engine (vLLM, or SmolLM2 through transformers) and minutes "
                       "of generation", "tests/synth/test_synth_stage.py"),
}

Recipe = Callable[[pa.Table, Path], tuple[dict[str, Any], pa.Table]]
RECIPES: dict[str, Recipe] = {}


def recipe(kind: str) -> Callable[[Recipe], Recipe]:
    def deco(fn: Recipe) -> Recipe:
        RECIPES[kind] = fn
        return fn

    return deco


@recipe("extract.html")
def _html(batch: pa.Table, tmp: Path) -> tuple[dict[str, Any], pa.Table]:
    from pipeline.readers import read_table

    warc = sorted((REPO / "examples" / "data").glob("*.warc.gz"))[0]
    t = read_table(warc)
    assert "html" in t.column_names and t.num_rows >= 10
    return {}, t.slice(0, 40)


@recipe("filter.lang")
def _lang(batch: pa.Table, tmp: Path) -> tuple[dict[str, Any], pa.Table]:
    from pipeline.filters.lid import FastTextLidStage

    lid = FastTextLidStage()
    lid.setup()
    return {"languages": ["en"]}, lid.process(batch, StageContext("lid"))


@recipe("filter.threshold")
def _threshold(batch: pa.Table, tmp: Path) -> tuple[dict[str, Any], pa.Table]:
    score = pa.array([len(t) % 97 / 97 for t in batch.column("text").to_pylist()], pa.float32())
    return {"column": "quality.x", "min": 0.5}, batch.append_column("quality.x", score)


@recipe("filter.toxicity")
def _toxicity(batch: pa.Table, tmp: Path) -> tuple[dict[str, Any], pa.Table]:
    return {"max_badword_frac": 0.0}, batch


def _labelled(n: int):  # type: ignore[no-untyped-def]
    from classifiers.data import read_labelled

    data = read_labelled(QUALITY)
    return data.subset(range(0, len(data), len(data) // n)[:n])


@recipe("filter.decontaminate")
def _decontaminate(batch: pa.Table, tmp: Path) -> tuple[dict[str, Any], pa.Table]:
    # the reference set: passages of three batch docs, so they (and only such docs) are dropped
    texts = batch.column("text").to_pylist()
    ref = tmp / "ref.jsonl"
    ref.write_text("".join(json.dumps({"text": " ".join(t.split()[:40]), "task": "t"}) + "\n"
                           for t in texts[:3] if len(t.split()) >= 40))
    return {"reference": [str(ref)]}, batch


@recipe("classify.fasttext")
def _fasttext(batch: pa.Table, tmp: Path) -> tuple[dict[str, Any], pa.Table]:
    from classifiers.fasttext_model import FastTextParams, train_fasttext

    path = tmp / "q.bin"
    train_fasttext(_labelled(300), path, FastTextParams(dim=8, bucket=10_000))
    return {"model_path": str(path)}, batch


@recipe("classify.perplexity")
def _perplexity(batch: pa.Table, tmp: Path) -> tuple[dict[str, Any], pa.Table]:
    from classifiers.perplexity import TinyLMConfig, TrainSettings, train_lm

    out = tmp / "lm"
    texts = batch.column("text").to_pylist()[:32]
    train_lm(texts, out, TinyLMConfig(vocab_size=512, context=32, d_model=32, n_layer=1,
                                      n_head=2),
             TrainSettings(steps=2, batch_size=4), progress=False)
    return {"model_path": str(out), "max_tokens": 64}, batch.slice(0, 16)


@recipe("classify.embedding")
def _embedding(batch: pa.Table, tmp: Path) -> tuple[dict[str, Any], pa.Table]:
    from classifiers.embedding import train_embedding_head

    data = _labelled(40)
    head = tmp / "q.head.json"
    train_embedding_head(data.texts, data.labels, head, "1", max_tokens=16, progress=False)
    assert json.loads(head.read_text())["n_train"] == 40
    return {"head_path": str(head)}, batch.slice(0, 16)


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


def test_every_stage_is_covered():
    kinds = set(all_stages())
    assert set(RECIPES) <= kinds, f"recipes for unregistered stages: {set(RECIPES) - kinds}"
    assert set(NOT_HERE) <= kinds, f"NOT_HERE names unregistered stages: {set(NOT_HERE) - kinds}"
    assert not set(RECIPES) & set(NOT_HERE)
    for kind, (why, test) in NOT_HERE.items():
        assert why and (REPO / test).exists(), f"{kind}: NOT_HERE needs a reason and a real test file"


@pytest.mark.parametrize("kind", sorted(k for k in all_stages() if k not in NOT_HERE))
def test_stage_contract(kind: str, batch: pa.Table, tmp_path: Path):
    config, inp = RECIPES[kind](batch, tmp_path) if kind in RECIPES else ({}, batch)
    cls = all_stages()[kind]
    try:
        stage = cls(config)
        stage.setup()
    except Exception as e:  # a new stage that needs more than defaults: say what to do
        pytest.fail(f"{kind} does not run with {config or 'its defaults'} ({type(e).__name__}: {e}); "
                    f"add a recipe (or a NOT_HERE entry with a reason) in {Path(__file__).name}")
    ctx = StageContext(kind)
    if isinstance(stage, BarrierStage):
        art = stage.map(inp, ctx)
        assert isinstance(art, pa.Table)
        p = tmp_path / "a.parquet"
        pq.write_table(art, p)
        (tmp_path / "state").mkdir()
        stage.reduce([p], tmp_path / "state")
        stage.load_state(tmp_path / "state")
    out = stage.process(inp, ctx)
    assert isinstance(out, pa.Table)
    assert inp.num_rows > 0
    for col in stage.output_columns():
        assert col in out.column_names, f"{kind} declared output {col!r} but did not write it"
    for col in inp.column_names:
        if col == "html" and kind == "extract.html":
            continue  # extract.html drops the page source unless keep_html
        assert col in out.column_names, f"{kind} lost column {col!r}"
    dropped = int(ctx.counters.get("dropped", 0))
    assert out.num_rows + dropped == inp.num_rows, f"{kind}: rows in != out + dropped"
    if isinstance(stage, ScoreStage):
        assert out.num_rows == inp.num_rows
    if isinstance(stage, FilterStage):
        assert set(out.column("doc_id").to_pylist()) <= set(inp.column("doc_id").to_pylist())
    stage.teardown()
