"""lid.fasttext on real translated paragraphs, and filter.lang's decisions and reasons."""

from __future__ import annotations

import pickle
import random
from collections import Counter

import pyarrow as pa
import pytest

from pipeline.filters.lid import FastTextLidStage, LangFilterStage, default_model_path
from pipeline.stage import StageContext
from tests.conftest import doc_table, read_jsonl_zst


def _table(texts: list[str | None]) -> pa.Table:
    """A batch that also carries the input's own ids, which must pass through."""
    return doc_table(texts).append_column("id", pa.array(list(range(len(texts)))))

#: langid_dev labels → lid.176 codes (lid.176 has one Chinese label and calls Bokmål "no")
LABEL_TO_LID = {"zh-Hans": "zh", "zh-Hant": "zh", "nb": "no"}




@pytest.fixture(scope="module")
def lid() -> FastTextLidStage:
    stage = FastTextLidStage()
    stage.setup()
    return stage


@pytest.fixture(scope="module")
def paragraphs(shared_data) -> list[dict]:
    rows = read_jsonl_zst(shared_data / "langid_dev.jsonl.zst")
    return random.Random(0).sample(rows, 2000)


def test_accuracy_on_2000_real_paragraphs_and_nothing_dropped(lid, paragraphs):
    ctx = StageContext("lid.fasttext")
    out = lid.process(_table([p["text"] for p in paragraphs]), ctx)
    assert out.num_rows == len(paragraphs) and ctx.counters["dropped"] == 0
    assert out.column("id").to_pylist() == list(range(len(paragraphs)))
    assert out.schema.field("lang").type == pa.string()
    assert out.schema.field("lang_score").type == pa.float32()
    langs = out.column("lang").to_pylist()
    gold = [LABEL_TO_LID.get(p["label"], p["label"]) for p in paragraphs]
    accuracy = sum(a == b for a, b in zip(langs, gold, strict=True)) / len(gold)
    assert len(set(gold)) >= 20
    assert accuracy >= 0.95, Counter(
        (g, a) for a, g in zip(langs, gold, strict=True) if a != g
    ).most_common(10)
    scores = out.column("lang_score").to_pylist()
    assert all(0.0 < s <= 1.0 for s in scores)


def test_every_row_annotated_even_empty_or_odd(lid):
    texts = [
        "",
        None,
        "   \n\n  ",
        "Debian is a free operating system.\nIt comes with over 59000 packages.\r\nAll free.",
        "x" * 50_000,
        "1234 5678 ++ -- ==",
    ]
    out = lid.process(_table(texts), StageContext("lid"))
    assert out.num_rows == len(texts)
    langs = out.column("lang").to_pylist()
    scores = out.column("lang_score").to_pylist()
    assert langs[:3] == ["und"] * 3 and scores[:3] == [0.0] * 3
    assert langs[3] == "en" and scores[3] > 0.65
    assert all(isinstance(x, str) and x for x in langs)


def test_model_path_and_errors(tmp_path):
    stage = FastTextLidStage({"model_path": default_model_path()})
    assert stage.predict(["Das ist ein ganz normaler deutscher Satz über Pakete."])[0] == ["de"]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        FastTextLidStage({"model_path": str(tmp_path / "missing.bin")}).setup()


def test_stage_pickles_without_its_model(lid):
    clone = pickle.loads(pickle.dumps(lid))
    assert clone._model is None
    assert clone.predict(["Ceci est une phrase en français, sans aucun doute."])[0] == ["fr"]


def test_lang_filter_reasons():
    table = (
        _table(["a", "b", "c", "d", "e"])
        .append_column("lang", pa.array(["en", "en", "de", "fr", None], pa.string()))
        .append_column("lang_score", pa.array([0.99, 0.40, 0.99, 0.10, 0.9], pa.float32()))
    )
    ctx = StageContext("filter.lang", keep_dropped=True)
    out = LangFilterStage().process(table, ctx)
    assert out.column("text").to_pylist() == ["a"]
    assert ctx.counters["dropped.lang_low_score"] == 1
    assert ctx.counters["dropped.lang_not_allowed"] == 3
    dropped = pa.concat_tables(ctx.dropped)
    assert dropped.column("drop_reason").to_pylist() == [
        "lang_low_score",
        "lang_not_allowed",
        "lang_not_allowed",
        "lang_not_allowed",
    ]
    out = LangFilterStage({"languages": ["en", "de"], "min_score": 0.3}).process(
        table, StageContext("x")
    )
    assert out.column("text").to_pylist() == ["a", "b", "c"]


def test_lang_filter_needs_lid_first():
    with pytest.raises(ValueError, match="lid.fasttext"):
        LangFilterStage().process(_table(["a"]), StageContext("x"))


def test_lid_then_filter_on_mixed_real_text(lid, paragraphs, raw_docs):
    texts = [d["text"] for d in raw_docs[:100]] + [p["text"] for p in paragraphs[:100]]
    table = lid.process(_table(texts), StageContext("lid"))
    ctx = StageContext("filter.lang")
    out = LangFilterStage().process(table, ctx)
    kept = set(out.column("text").to_pylist())
    assert sum(t in kept for t in texts[:100]) >= 90  # the raw corpus is English
    assert sum(t in kept for t in texts[100:]) <= 5  # the translations are not
