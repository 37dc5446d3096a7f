"""lid.fasttext on real translated paragraphs, and filter.lang's decisions and reasons."""

from __future__ import annotations

import pickle
import random
from collections import Counter

import numpy as np
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


# --- the numba kernel against datatrove's FT176LID (real fastText) ---------------------------


@pytest.fixture(scope="module")
def datatrove_lid():
    """datatrove's LanguageFilter model, pointed at the same lid.176.ftz (it downloads otherwise)."""
    dt_lid = pytest.importorskip("datatrove.utils.lid")
    from fasttext.FastText import _FastText

    model = dt_lid.FT176LID()
    model._model = _FastText(default_model_path())
    return model


def _datatrove_predict(model, texts: list[str]) -> tuple[list[str], list[float]]:
    from datatrove.data import Document

    out = [model.predict(Document(text=t, id=str(i)))[0] for i, t in enumerate(texts)]
    return [lang for lang, _ in out], [score for _, score in out]


@pytest.fixture(scope="module")
def parity_corpus(shared_data, paragraphs) -> list[str]:
    """Whole pages (doc pages, licences, dictionaries, literature; 1,500 rows, ~25 MB) and 2,000
    paragraphs in 23 languages."""
    pages = read_jsonl_zst(shared_data / "pretrain_raw.jsonl.zst", limit=1500)
    return [d["text"] for d in pages] + [p["text"] for p in paragraphs]


def test_kernel_matches_datatrove_ft176_on_every_real_document(parity_corpus, datatrove_lid):
    """100% of labels and bit-identical scores (tolerance 0: fastText's float32 order is kept)."""
    ours = FastTextLidStage({"max_chars": None})
    langs, scores = ours.predict(parity_corpus)
    dt_langs, dt_scores = _datatrove_predict(datatrove_lid, parity_corpus)
    assert len(set(dt_langs)) >= 20
    diff = [(i, a, b) for i, (a, b) in enumerate(zip(langs, dt_langs, strict=True)) if a != b]
    assert not diff, diff[:5]
    # lang_score is clipped to 1.0 (hs log-probabilities carry a +1e-5 and can exceed it)
    expected = np.minimum(np.array(dt_scores, np.float64), 1.0).astype(np.float32)
    assert np.array_equal(scores, expected), np.abs(scores - expected).max()
    # fastText's own C++ predict (impl=fasttext) gives the same too
    ref_langs, ref_scores = FastTextLidStage({"max_chars": None, "impl": "fasttext"}).predict(
        parity_corpus
    )
    assert ref_langs == langs and np.array_equal(ref_scores, scores)


def test_kernel_matches_fasttext_on_truncation_and_tokenizer_edges():
    """max_chars, fastText's separators (\\r \\t \\v \\f NUL), a literal ``</s>`` (fastText stops
    reading there), ``__label__`` tokens (skipped), multi-byte n-grams, runs of one letter."""
    page = "Le système d'exploitation Debian est libre. " * 50 + "\nThe rest is English. " * 40
    texts = [
        page,
        "Grüße aus Köln\r\nund\tviele\vandere\fWörter\0hier",
        "Ceci est en français </s> but this long tail is in English and ignored by fastText",
        "__label__de __label__xx Das ist ein ganz normaler deutscher Satz.",
        "日本語のテキストです。これは日本語の文章です。",
        "Это русский текст о свободной операционной системе.",
        "a" * 3000,
        "__label__en",
        " \t\r\n",
    ]
    for max_chars in (None, 40, 2200, 10_000):
        kernel = FastTextLidStage({"max_chars": max_chars}).predict(texts)
        ref = FastTextLidStage({"max_chars": max_chars, "impl": "fasttext"}).predict(texts)
        assert kernel[0] == ref[0] and np.array_equal(kernel[1], ref[1]), max_chars
    langs = FastTextLidStage({"max_chars": None}).predict(texts)[0]
    assert langs[2] == "fr" and langs[3] == "de" and langs[7:] == ["und", "und"]
    # the first 2,200 characters are French; the whole page leans English
    assert FastTextLidStage({"max_chars": 2200}).predict([page])[0] == ["fr"]


def test_kernel_reads_arrow_chunks_slices_and_nulls(lid, paragraphs):
    texts = [p["text"] for p in paragraphs[:60]]
    expected = lid.predict(texts)
    chunked = pa.chunked_array([pa.array(texts[:25], pa.string()), pa.array(texts[25:])])
    table = doc_table([None] * 60).set_column(1, "text", chunked)
    out = lid.process(table, StageContext("lid"))
    assert out.column("lang").to_pylist() == expected[0]
    sliced = pa.array([None, *texts, ""], pa.large_string()).slice(1, 60)
    got = lid._predict_column(sliced)
    assert got[0] == expected[0] and np.array_equal(got[1], expected[1])


def test_model_reader_against_fasttext_and_its_python_reference():
    """The .ftz reader: decoded input rows equal fastText's own (getInputVector), in-vocabulary
    words carry fastText's subword rows, and the numba table builder equals the Python one."""
    import fasttext
    import fasttext_pybind

    from pipeline.filters import _lid_model

    path = default_model_path()
    ours = _lid_model.load(path)
    ref = _lid_model.load(path, fast=False)
    for f in ("word_hash", "sub_offsets", "sub_rows", "word_table", "input_rows"):
        assert np.array_equal(getattr(ours, f), getattr(ref, f)), f
    ft = fasttext.load_model(path)
    assert ours.labels == [lab.removeprefix("__label__") for lab in ft.labels]
    for i in random.Random(0).sample(range(ours.input_rows.shape[0]), 300):
        vec = fasttext_pybind.Vector(ours.dim)
        ft.f.getInputVector(vec, i)
        assert np.array_equal(np.array(vec), ours.input_rows[i]), i
    for w in ft.words[:200]:
        wid = ft.get_word_id(w)
        rows = ours.sub_rows[ours.sub_offsets[wid] : ours.sub_offsets[wid + 1]]
        assert list(ft.get_subwords(w)[1]) == rows.tolist(), w


def test_lid_then_filter_lang_keeps_what_datatrove_language_filter_keeps(parity_corpus):
    """Decisions of lid.fasttext (whole page) + filter.lang against datatrove's LanguageFilter
    (languages=["en"], threshold 0.65) on every text of the parity corpus. datatrove keeps a
    score > 0.65, filter.lang a score >= 0.65: they differ only at exactly 0.65 (float32),
    which no text here hits."""
    from datatrove.data import Document
    from datatrove.pipeline.filters import LanguageFilter
    from fasttext.FastText import _FastText

    dt = LanguageFilter(languages=["en"], language_threshold=0.65)
    dt.model._model = _FastText(default_model_path())
    expected = [bool(dt.filter(Document(text=t, id=str(i)))) for i, t in enumerate(parity_corpus)]
    table = FastTextLidStage({"max_chars": 0}).process(_table(parity_corpus), StageContext("lid"))
    assert not (table.column("lang_score").to_numpy() == np.float32(0.65)).any()
    out = LangFilterStage({"languages": ["en"], "min_score": 0.65}).process(
        table, StageContext("filter.lang")
    )
    kept = set(out.column("id").to_pylist())
    got = [i in kept for i in range(len(parity_corpus))]
    assert got == expected
    assert 1000 < sum(got) < len(got) - 1000


def test_without_numba_the_stage_falls_back_to_fasttext(monkeypatch, paragraphs, caplog):
    import pipeline.filters.lid as lid_mod

    texts = [p["text"] for p in paragraphs[:40]]
    expected = FastTextLidStage().predict(texts)
    monkeypatch.setattr(lid_mod, "_have_numba", lambda: False)
    stage = FastTextLidStage()
    got = stage.predict(texts)
    assert stage._kernel is False and "numba is not installed" in caplog.text
    assert got[0] == expected[0] and np.array_equal(got[1], expected[1])


def test_compact_bucket_index_and_float_modulo_equal_the_plain_ones():
    """The kernel's n-gram lookup: ``h % bucket`` by a float64 multiply and the bit/rank index
    give exactly ``bucket_row[h % bucket]`` — every bucket of lid.176, and hashes at the edges
    (0, 2**32 - 1, multiples of the bucket count and their neighbours) plus random ones."""
    from pipeline.filters import _lid_model
    from pipeline.filters._lid_kernel import _bucket_row, _mod

    m = _lid_model.load(default_model_path())
    every = np.arange(m.bucket, dtype=np.int64)
    idx = np.array([_bucket_row(b, m.bucket_bits, m.bucket_rank, m.rank_row) for b in every[::7]])
    assert np.array_equal(idx, m.bucket_row[::7])
    assert (m.bucket_row >= 0).sum() == len(m.rank_row) and m.rank_row.min() >= m.nwords
    d = m.bucket
    rng = np.random.default_rng(0)
    hs = [0, 1, d - 1, d, d + 1, 2**32 - 1, 2**32 - 2, *(k * d + e for k in (1, 2, 2147, 2147) for e in (-1, 0, 1))]
    hs += rng.integers(0, 2**32, 20_000).tolist()
    hs = [h for h in hs if 0 <= h < 2**32]
    assert [_mod(np.int64(h), np.int64(d), 1.0 / d) for h in hs] == [h % d for h in hs]
    for d2 in (1, 3, 1_000_003, 2**31 - 1):
        assert [_mod(np.int64(h), np.int64(d2), 1.0 / d2) for h in hs[:3000]] == [h % d2 for h in hs[:3000]]
