"""Toxicity word list + classifier on real text from quality_train."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from classifiers.toxicity import (
    BADWORD_FRAC,
    CLASSIFIER_PROB,
    ToxicityFilter,
    ToxicityScorer,
    badword_fraction,
    load_wordlist,
)
from pipeline import registry
from pipeline.stage import StageContext

pytest.importorskip("better_profanity")
pytest.importorskip("profanity_check")


@pytest.fixture(scope="module")
def by_kind(quality_table) -> dict[str, pa.Table]:
    kinds = quality_table.column("kind").to_pylist()
    return {
        k: quality_table.filter(pa.array([x == k for x in kinds]))
        for k in ("doc_prose", "wordlist", "literature_novel")
    }


def test_wordlist_source_and_allow_list():
    singles, phrases = load_wordlist(())
    assert len(singles) + len(phrases) > 800  # better-profanity 0.7.0 ships 916 lines
    assert "god" in singles and "god" not in load_wordlist()[0]
    text = "Thank God it rained."
    assert badword_fraction([text], allow=())[0] == pytest.approx(1 / 4)
    assert badword_fraction([text])[0] == 0.0


def test_word_lists_score_higher_than_prose(by_kind):
    prose = badword_fraction(by_kind["doc_prose"].column("text").to_pylist())
    words = badword_fraction(by_kind["wordlist"].column("text").to_pylist())
    novels = badword_fraction(by_kind["literature_novel"].column("text").to_pylist())
    # real dictionary word lists contain the slurs; manuals and Austen almost never do
    assert (words > 0).mean() > 5 * max((prose > 0).mean(), 0.01)
    assert (novels > 0.01).mean() < 0.01


def test_score_stage_columns(by_kind):
    assert registry._REGISTRY["classify.toxicity"] is ToxicityScorer
    assert registry._REGISTRY["filter.toxicity"] is ToxicityFilter
    assert "classifiers.toxicity" in registry.STAGE_MODULES
    t = by_kind["doc_prose"].slice(0, 200)
    out = ToxicityScorer().process(t, StageContext("tox"))
    assert out.column_names[-2:] == [BADWORD_FRAC, CLASSIFIER_PROB]
    prob = out.column(CLASSIFIER_PROB).to_numpy()
    assert ((prob >= 0) & (prob <= 1)).all()
    assert np.median(prob) < 0.2  # technical manuals are not offensive


def test_filter_reasons_and_reuse_of_scores(by_kind):
    words = by_kind["wordlist"]
    strict = ToxicityFilter({"max_badword_frac": 0.0, "max_prob": None})  # C4-style: any hit
    ctx = StageContext("tox", keep_dropped=True)
    kept = strict.process(words, ctx)
    n_hit = int((badword_fraction(words.column("text").to_pylist()) > 0).sum())
    assert n_hit > 0 and kept.num_rows == words.num_rows - n_hit
    assert ctx.counters["dropped.toxic.wordlist"] == n_hit
    assert set(ctx.dropped[0].column("drop_reason").to_pylist()) == {"toxic.wordlist"}

    # with scores precomputed, the filter uses them (a forced score drops the row)
    t = by_kind["doc_prose"].slice(0, 5)
    t = t.append_column(BADWORD_FRAC, pa.array([0.0] * 5, pa.float32()))
    t = t.append_column(CLASSIFIER_PROB, pa.array([0.1, 0.995, 0.2, 0.3, 0.4], pa.float32()))
    ctx = StageContext("tox")
    out = ToxicityFilter().process(t, ctx)
    assert out.num_rows == 4 and ctx.counters["dropped.toxic.classifier"] == 1
