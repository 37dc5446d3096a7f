"""Gopher repetition and quality in one pipeline split each batch's words once
(``pipeline.filters.words._SpanMemo``): the second stage derives the kept rows' words from the
first's, and its decisions and reasons are those of a fresh split, also when a stage between
them rewrites the text (then it splits again)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from pipeline.filters import words as W
from pipeline.filters.heuristics import GopherQualityStage, GopherRepetitionStage
from pipeline.stage import StageContext


@pytest.fixture
def table(raw_docs):
    texts = [d["text"] for d in raw_docs[:400]]
    texts[7] = None  # a null row reads as ""
    return pa.table(
        {
            "doc_id": [str(i) for i in range(len(texts))],
            "text": pa.chunked_array(
                [pa.array(texts[:150], pa.large_string()), pa.array(texts[150:], pa.large_string())]
            ),
        }
    )


def _fresh(col, docs=None):
    share = W.SHARE_WORDS
    W.SHARE_WORDS = False
    try:
        return W.batch_tokens(col, docs)
    finally:
        W.SHARE_WORDS = share


def _same_tokens(a, b):
    return (
        all(
            np.array_equal(getattr(a, f), getattr(b, f))
            for f in ("docs", "tok_s", "tok_e", "doc_tok")
        )
        and np.array_equal(a.offsets, b.offsets)
        and np.array_equal(a.data[: a.offsets[-1]], b.data[: b.offsets[-1]])
    )


def _stages():
    rep, q = GopherRepetitionStage({}), GopherQualityStage({})
    rep.setup()
    q.setup()
    return rep, q


def test_quality_after_repetition_reuses_the_words_and_decides_the_same(table):
    rep, q = _stages()
    kept = rep.process(table, StageContext("rep"))
    assert 0 < kept.num_rows < table.num_rows  # rows dropped: the column the next stage sees is new
    h, m = W._MEMO.hits, W._MEMO.misses
    shared = q.keep(kept)
    assert (W._MEMO.hits, W._MEMO.misses) == (h + 1, m)  # derived, not split again
    assert _same_tokens(W.batch_tokens(kept.column("text")), _fresh(kept.column("text")))
    W.SHARE_WORDS = False
    try:
        fresh = q.keep(kept)
    finally:
        W.SHARE_WORDS = True
    assert np.array_equal(shared[0], fresh[0]) and list(shared[1]) == list(fresh[1])
    assert not shared[0].all()


def test_repetition_after_quality_takes_its_rows_from_the_shared_words(table):
    rep, q = _stages()
    kept = q.process(table, StageContext("q"))
    h = W._MEMO.hits
    shared = rep.keep(kept)
    assert W._MEMO.hits == h + 1
    W.SHARE_WORDS = False
    try:
        fresh = rep.keep(kept)
    finally:
        W.SHARE_WORDS = True
    assert list(shared[1]) == list(fresh[1])


def test_a_stage_between_that_rewrites_text_gets_a_fresh_split(table):
    """Same byte lengths, other word boundaries ('e' -> ' '): only the byte check catches it."""
    rep, q = _stages()
    kept = rep.process(table, StageContext("rep"))
    rewritten = kept.set_column(1, "text", pc.replace_substring(kept.column("text"), "e", " "))
    assert pc.sum(pc.binary_length(rewritten.column("text"))) == pc.sum(
        pc.binary_length(kept.column("text"))
    )
    m = W._MEMO.misses
    shared = q.keep(rewritten)
    assert W._MEMO.misses == m + 1
    W.SHARE_WORDS = False
    try:
        fresh = q.keep(rewritten)
    finally:
        W.SHARE_WORDS = True
    assert list(shared[1]) == list(fresh[1])
    # and the rewrite matters: the original text's words would decide otherwise
    assert list(shared[1]) != list(q.keep(kept)[1])


def test_subsets_and_sliced_columns_match_a_fresh_split(table):
    col = table.column("text")
    W.batch_tokens(col)
    docs = np.array([0, 3, 7, 150, 151, 399], dtype=np.int64)
    assert _same_tokens(W.batch_tokens(col, docs), _fresh(col, docs))
    sl = col.slice(10, 200)  # other offsets into the same buffers: another column
    m = W._MEMO.misses
    assert _same_tokens(W.batch_tokens(sl), _fresh(sl))
    assert W._MEMO.misses == m + 1
    mask = np.zeros(200, dtype=bool)
    mask[[0, 1, 2, 50, 140, 141, 199]] = True
    W.note_filter(sl, mask)
    filtered = sl.filter(pa.array(mask))
    h = W._MEMO.hits
    got = W.batch_tokens(filtered)
    assert W._MEMO.hits == h + 1
    assert _same_tokens(got, _fresh(filtered))
