"""Toxicity: a word list and a classifier, as scores (``classify.toxicity``) and a filter
(``filter.toxicity``).

Sources (both ship offline inside PyPI wheels; nothing is downloaded at run time):

- **Word list**: ``better-profanity==0.7.0`` (MIT), file ``better_profanity/
  profanity_wordlist.txt``: 916 English profanities and slurs, some multi-word. Matched
  case-insensitively on whole words; the score is the fraction of words that are on the list
  (C4 drops a page on any hit of the LDNOOBW list; a fraction is kinder to dictionaries,
  medicine and literature, which use some listed words innocently). The list is broad: on a
  1,000-document sample of pretrain_raw its most frequent hits were "god", "len", "sh",
  "kill", "tit", "slave", "fat", "strip", "organ"... so :data:`INNOCENT_WORDS` (listed words
  with a common innocent sense, picked from those top hits) is excluded by default; pass
  ``allow_words=[]`` to use the list as shipped.
- **Classifier**: ``alt-profanity-check==1.9.1`` (MIT): a linear SVM on character/word
  n-grams trained on ~200k human-labelled clean/offensive strings, with calibrated
  probabilities (scikit-learn). Applied per paragraph (documents are split on blank lines; the
  first ``max_paragraphs`` count) and the document gets the maximum, so one hateful paragraph
  in a long page is not diluted away.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
from pydantic import Field

from pipeline import schema
from pipeline.registry import register
from pipeline.stage import FilterStage, Resources, ScoreStage, StageConfig

BADWORD_FRAC = "toxicity.badword_frac"
CLASSIFIER_PROB = "toxicity.prob"
#: Listed words with common innocent senses (code, dictionaries, scripture, medicine, literature).
INNOCENT_WORDS: tuple[str, ...] = (
    "god", "len", "sh", "shi", "kill", "tit", "slave", "fat", "strip", "organ", "urine", "xxx",
    "xx", "stroke", "naked", "murder", "stupid", "dummy", "screw", "woody", "weed", "virgin",
    "pawn", "hemp", "thrust", "erect", "oral", "meth", "dong", "uterus", "gay", "pot", "lust",
    "asses", "wench", "sex", "sexual", "hell", "sperm", "color", "balls", "crack", "pubic",
    "breast", "breasts", "vagina", "penis", "anal", "bloody", "damn", "drunk", "hooker",
    # names, animals and anatomy in literature and word lists (Fanny Price, Moby Dick)
    "fanny", "dick", "cock", "cocks", "slope", "paddy", "opium", "opiate", "ovum", "gonad",
    "gonads", "erection", "orally",
)
_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")
_PARA = re.compile(r"\n\s*\n")


@lru_cache(maxsize=4)
def load_wordlist(allow: tuple[str, ...] = INNOCENT_WORDS
                  ) -> tuple[frozenset[str], tuple[tuple[str, ...], ...]]:
    """(single words, multi-word phrases as word tuples) from better-profanity's list,
    without the words in ``allow``."""
    from importlib import resources

    try:
        text = (resources.files("better_profanity") / "profanity_wordlist.txt").read_text("utf-8")
    except ModuleNotFoundError:
        raise ImportError("the toxicity word list ships in better-profanity: "
                          "pip install better-profanity==0.7.0") from None
    singles: set[str] = set()
    phrases: set[tuple[str, ...]] = set()
    for line in text.splitlines():
        words = tuple(_WORD.findall(line.strip().lower()))
        if len(words) == 1:
            singles.add(words[0])
        elif len(words) > 1:
            phrases.add(words)
    return frozenset(singles - set(allow)), tuple(sorted(phrases))


def badword_fraction(texts: Sequence[str], allow: Sequence[str] = INNOCENT_WORDS) -> np.ndarray:
    """Fraction of each text's words that are list words (a phrase counts its length)."""
    singles, phrases = load_wordlist(tuple(sorted(allow)))
    firsts = {p[0] for p in phrases}
    out = np.zeros(len(texts), dtype=np.float64)
    for i, t in enumerate(texts):
        words = _WORD.findall((t or "").lower())
        if not words:
            continue
        hits = 0
        for j, w in enumerate(words):
            if w in singles:
                hits += 1
            elif w in firsts:
                for p in phrases:
                    if p[0] == w and tuple(words[j:j + len(p)]) == p:
                        hits += len(p)
                        break
        out[i] = hits / len(words)
    return out


class ProfanityClassifier:
    """alt-profanity-check's vectoriser + calibrated linear SVM, max over paragraphs."""

    def __init__(self) -> None:
        try:
            from profanity_check import profanity_check as pc
        except ImportError:
            raise ImportError("the toxicity classifier ships in alt-profanity-check: "
                              "pip install alt-profanity-check==1.9.1") from None
        self.vectorizer, self.model = pc.vectorizer, pc.model

    def predict(self, texts: Sequence[str], max_paragraphs: int = 50,
                max_chars: int = 2000) -> np.ndarray:
        owners: list[int] = []
        paras: list[str] = []
        for i, t in enumerate(texts):
            parts = [p.strip() for p in _PARA.split(t or "") if p.strip()][:max_paragraphs]
            for p in parts or [""]:
                owners.append(i)
                paras.append(p[:max_chars])
        prob = self.model.predict_proba(self.vectorizer.transform(paras))[:, 1]
        out = np.zeros(len(texts), dtype=np.float64)
        np.maximum.at(out, np.asarray(owners), prob)
        return out


class ToxicityScoreConfig(StageConfig):
    allow_words: tuple[str, ...] = Field(
        INNOCENT_WORDS, description="listed words not counted (default: INNOCENT_WORDS)")
    classifier: bool = Field(True, description="also run the classifier (toxicity.prob)")
    max_paragraphs: int = Field(50, gt=0, description="paragraphs per document for the classifier")


@register
class ToxicityScorer(ScoreStage):
    """Adds ``toxicity.badword_frac`` (word list) and ``toxicity.prob`` (classifier)."""

    kind = "classify.toxicity"
    Config = ToxicityScoreConfig
    inputs = (schema.TEXT,)
    outputs = (BADWORD_FRAC, CLASSIFIER_PROB)
    resources: ClassVar[Resources] = Resources(cpus=1.0, memory_gb=0.5)
    summary = "toxicity scores: word-list fraction and a profanity classifier's probability"

    config: ToxicityScoreConfig

    def __init__(self, config: Any = None, name: str | None = None):
        super().__init__(config, name)
        self._clf: ProfanityClassifier | None = None

    def output_columns(self) -> tuple[str, ...]:
        return (BADWORD_FRAC, CLASSIFIER_PROB) if self.config.classifier else (BADWORD_FRAC,)

    def setup(self) -> None:
        if self.config.classifier and self._clf is None:
            self._clf = ProfanityClassifier()

    def score(self, table: pa.Table) -> dict[str, pa.Array]:
        self.setup()
        texts = table.column(schema.TEXT).to_pylist()
        frac = badword_fraction(texts, self.config.allow_words)
        cols = {BADWORD_FRAC: pa.array(frac, pa.float32())}
        if self._clf is not None:
            cols[CLASSIFIER_PROB] = pa.array(
                self._clf.predict(texts, self.config.max_paragraphs), pa.float32())
        return cols


class ToxicityFilterConfig(StageConfig):
    max_badword_frac: float | None = Field(
        0.01, ge=0, description="drop when more than this fraction of words is on the list "
                                "(0.01 = 1 in 100 words; 0 = any hit, as C4); None = off")
    allow_words: tuple[str, ...] = Field(
        INNOCENT_WORDS, description="listed words not counted (default: INNOCENT_WORDS)")
    max_prob: float | None = Field(
        0.99, ge=0, le=1, description="drop when the classifier's max paragraph probability "
                                     "exceeds this; None = off")
    max_paragraphs: int = Field(50, gt=0)


@register
class ToxicityFilter(FilterStage):
    """Drops toxic documents: reason ``toxic.wordlist`` or ``toxic.classifier``.

    Reuses ``toxicity.badword_frac`` / ``toxicity.prob`` when ``classify.toxicity`` ran
    before it; computes them otherwise.
    """

    kind = "filter.toxicity"
    Config = ToxicityFilterConfig
    inputs = (schema.TEXT,)
    outputs = ()
    resources: ClassVar[Resources] = Resources(cpus=1.0, memory_gb=0.5)
    summary = "drop documents with too many listed profanities or a high toxicity probability"

    config: ToxicityFilterConfig

    def __init__(self, config: Any = None, name: str | None = None):
        super().__init__(config, name)
        self._clf: ProfanityClassifier | None = None

    def setup(self) -> None:
        if self.config.max_prob is not None and self._clf is None:
            self._clf = ProfanityClassifier()

    def keep(self, table: pa.Table) -> tuple[np.ndarray, list[str | None]]:
        self.setup()
        cfg = self.config
        n = table.num_rows
        texts: list[str] | None = None
        reasons: list[str | None] = [None] * n
        mask = np.ones(n, dtype=bool)
        if cfg.max_badword_frac is not None:
            if BADWORD_FRAC in table.column_names:
                frac = table.column(BADWORD_FRAC).to_numpy(zero_copy_only=False)
            else:
                texts = table.column(schema.TEXT).to_pylist()
                frac = badword_fraction(texts, cfg.allow_words)
            bad = frac > cfg.max_badword_frac
            for i in np.flatnonzero(bad):
                reasons[i] = "toxic.wordlist"
            mask &= ~bad
        if cfg.max_prob is not None:
            if CLASSIFIER_PROB in table.column_names:
                prob = table.column(CLASSIFIER_PROB).to_numpy(zero_copy_only=False)
            else:
                assert self._clf is not None
                if texts is None:
                    texts = table.column(schema.TEXT).to_pylist()
                prob = self._clf.predict(texts, cfg.max_paragraphs)
            bad = (prob > cfg.max_prob) & mask
            for i in np.flatnonzero(bad):
                reasons[i] = "toxic.classifier"
            mask &= ~bad
        return mask, reasons
