"""Per-document difficulty and quality signals for curriculum building.

Cheap, tokenizer-free and vectorized where it matters:

- ``compression_ratio``: zlib-compressed bytes / raw bytes. Real prose sits near 0.35–0.45;
  logs, changelogs, word lists and licence boilerplate compress far better (< 0.3) because they
  repeat themselves; random strings compress worse (> 0.7).
- ``words``: whitespace words (the manifest's token estimate).
- ``stopword_share`` (function words / words) and ``punct_line_share`` (lines ending in
  sentence punctuation): prose has many of both, lists, logs and navigation text few.
- ``words_per_sentence`` and ``syllables_per_word``: the two terms of Flesch reading ease;
  ``readability`` is the Flesch score itself (higher = easier; 60–70 is plain English).
- quality columns the pipeline wrote (``quality.*``, higher is better) and perplexity columns
  (``perplexity`` / ``quality.perplexity``, lower is better) when present.

``difficulty`` is the mean percentile rank of length, words per sentence, syllables per word
and compression ratio; ``quality`` is the mean percentile rank of the quality columns (or, with
none, of stop-word share, punctuated lines and non-repetitiveness) — ranks make signals on
different scales comparable without tuning constants.
"""

from __future__ import annotations

import re
import zlib

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_SENT = re.compile(r"[.!?]+(?:\s|$)")
_VOWEL_GROUPS = re.compile(r"[aeiouy]+")
_WORD = re.compile(r"[A-Za-z]+")
#: Function words that make up ~40% of running English prose and almost none of lists, logs
#: and code (Gopher's stop-word rule uses the same idea).
STOPWORDS = frozenset(
    "the of and to a in is that it was he for on as with his be at by i this had not are but "
    "from or have an they which you were her all she there would their we him been has when who "
    "will more no if out so said what up its about into than them can only other".split()
)

#: zlib ratio under which text is repetitive (logs, word lists: ~0.22–0.26 on quality_train;
#: prose snippets of a few hundred words: ~0.53–0.57). Above it the ratio says little.
REPETITIVE_BELOW = 0.45


def percentile_rank(x: np.ndarray) -> np.ndarray:
    """Ranks scaled to [0, 1] (ties share the mean rank); NaNs get 0.5."""
    x = np.asarray(x, dtype=np.float64)
    out = np.full(len(x), 0.5)
    ok = ~np.isnan(x)
    n = int(ok.sum())
    if n > 1:
        v = x[ok]
        order = np.argsort(v, kind="stable")
        ranks = np.empty(n)
        ranks[order] = np.arange(n)
        # average ties
        _, inv, counts = np.unique(v, return_inverse=True, return_counts=True)
        sums = np.bincount(inv, weights=ranks)
        ranks = sums[inv] / counts[inv]
        out[ok] = ranks / (n - 1)
    return out


def _text_stats(text: str, sample_chars: int = 20_000) -> tuple[float, ...]:
    """(compression ratio, words per sentence, syllables per word, stop-word share, share of
    lines ending in punctuation) on the first 20k characters."""
    t = text[:sample_chars]
    raw = t.encode("utf-8", "surrogatepass")
    ratio = len(zlib.compress(raw, 6)) / max(1, len(raw))
    words = _WORD.findall(t)
    n_words = max(1, len(words))
    sentences = max(1, len(_SENT.findall(t)))
    syll = sum(max(1, len(_VOWEL_GROUPS.findall(w.lower()))) for w in words[:4000])
    stop = sum(w.lower() in STOPWORDS for w in words) / n_words
    lines = [ln.strip() for ln in t.splitlines() if ln.strip()]
    punct = sum(ln[-1] in ".!?\"'”’:;)" for ln in lines) / max(1, len(lines))
    return ratio, n_words / sentences, syll / max(1, min(n_words, 4000)), stop, punct


def compute_signals(table: pa.Table) -> dict[str, np.ndarray]:
    """Signals for every row of ``table`` (needs ``text``; uses quality/perplexity columns)."""
    texts = table.column("text").to_pylist()
    stats = np.array([_text_stats(t) for t in texts], dtype=np.float64).reshape(-1, 5)
    words = pc.list_value_length(pc.utf8_split_whitespace(table.column("text")))
    words = words.to_numpy(zero_copy_only=False).astype(np.float64)
    ratio, wps, spw, stop, punct = (stats[:, i] for i in range(5))
    readability = 206.835 - 1.015 * wps - 84.6 * spw
    difficulty = np.mean(
        [
            percentile_rank(words),
            percentile_rank(wps),
            percentile_rank(spw),
            percentile_rank(ratio),
        ],
        axis=0,
    )
    q_cols = [c for c in table.column_names if c.startswith("quality.") and "perplex" not in c]
    p_cols = [c for c in table.column_names if "perplex" in c]
    ranks = []
    for c in q_cols:
        ranks.append(percentile_rank(_as_float(table.column(c))))
    for c in p_cols:
        ranks.append(1.0 - percentile_rank(_as_float(table.column(c))))
    if ranks:
        quality = np.mean(ranks, axis=0)
    else:  # no scorer ran: prefer prose (function words, punctuated lines, not repetitive)
        quality = np.mean(
            [
                percentile_rank(stop),
                percentile_rank(punct),
                percentile_rank(np.minimum(ratio, REPETITIVE_BELOW)),
            ],
            axis=0,
        )
    return {
        "compression_ratio": ratio,
        "words": words,
        "words_per_sentence": wps,
        "syllables_per_word": spw,
        "readability": readability,
        "stopword_share": stop,
        "punct_line_share": punct,
        "difficulty": difficulty,
        "quality": quality,
    }


def _as_float(col: pa.ChunkedArray) -> np.ndarray:
    return np.asarray(col.cast(pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)
