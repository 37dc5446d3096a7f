"""A neutral near-duplicate ground truth, independent of assay's code.

Every benchmark that scores dedup quality uses this truth, so no method is scored against its
own shingles. It imports nothing from assay (only ``re``, ``math`` and numpy):

- **shingles**: lower-cased ``re.findall(r"\\w+")`` words (Python's Unicode ``\\w``), every run
  of 5 consecutive words joined by one space; a document with fewer than 5 words has one
  shingle made of all its words, an empty one has none. This is also what datasketch and rensa
  are fed in the benches (``shingles()``), and what assay and datatrove are offered
  (``neutral_text()`` / a ``get_shingles`` override).
- **pairs**: every pair of documents whose shingle *sets* have exact Jaccard >= ``threshold``.
  Shingle strings are interned as integer ids (a Python dict over the corpus's distinct
  shingles, so no hash collisions); candidates come from exact prefix filtering (sets ordered
  by global shingle frequency, rarest first; two sets with J >= t share one of their first
  ``|x| - ceil(t |x|) + 1`` elements) plus the length filter, and every candidate is verified
  by ``numpy.intersect1d``. ``tests/dedup/test_neutral_truth.py`` checks it equals brute force.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict

import numpy as np

_WORD = re.compile(r"\w+")


def shingles(text: str, n: int = 5) -> list[str]:
    """The neutral shingles of ``text`` (with repeats, in order)."""
    w = _WORD.findall(text.lower())
    if len(w) < n:
        return [" ".join(w)] if w else []
    return [" ".join(w[i : i + n]) for i in range(len(w) - n + 1)]


def neutral_text(text: str) -> str:
    """``text`` rewritten so that assay's own word splitter sees exactly the neutral words.

    assay's tokenizer splits on ASCII non-alphanumerics (so on ``_``, which ``\\w`` keeps) and
    lower-cases ASCII only: joining the lower-cased ``\\w+`` words by spaces, with ``_`` mapped to
    U+00B7 (a non-ASCII byte run, i.e. a word byte for assay) gives it the same word sequence.
    """
    return " ".join(w.replace("_", "\u00b7") for w in _WORD.findall(text.lower()))


def shingle_sets(texts: list[str], n: int = 5) -> list[np.ndarray]:
    """Each doc's set of shingle ids (sorted unique int64); ids are exact, not hashes."""
    ids: dict[str, int] = {}
    out = []
    for t in texts:
        s = {ids.setdefault(x, len(ids)) for x in shingles(t, n)}
        out.append(np.array(sorted(s), dtype=np.int64))
    return out


def exact_pairs(sets: list[np.ndarray], threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All (i < j) with Jaccard(sets[i], sets[j]) >= threshold: (left, right, jaccard)."""
    if not sets:
        e = np.zeros(0, dtype=np.int64)
        return e, e, np.zeros(0)
    allv = np.concatenate([s for s in sets if s.size] or [np.zeros(0, np.int64)])
    freq = np.bincount(allv) if allv.size else np.zeros(0, np.int64)
    index: dict[int, list[int]] = defaultdict(list)
    left, right, jac = [], [], []
    sizes = [s.size for s in sets]
    order = sorted(range(len(sets)), key=lambda i: sizes[i])  # by size: only look back
    for i in order:
        s = sets[i]
        if s.size == 0:
            continue
        ranked = s[np.lexsort((s, freq[s]))]  # rarest first, ties by id: one global order
        p = s.size - math.ceil(threshold * s.size - 1e-12) + 1
        cands: set[int] = set()
        min_size = threshold * s.size - 1e-12
        for x in ranked[:p].tolist():
            for j in index[x]:
                if sizes[j] >= min_size:
                    cands.add(j)
            index[x].append(i)
        for j in cands:
            inter = np.intersect1d(s, sets[j], assume_unique=True).size
            jj = inter / (s.size + sets[j].size - inter)
            if jj >= threshold:
                left.append(min(i, j))
                right.append(max(i, j))
                jac.append(jj)
    return np.array(left, np.int64), np.array(right, np.int64), np.array(jac)


def true_duplicate_docs(n: int, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Boolean mask: docs with at least one partner."""
    m = np.zeros(n, dtype=bool)
    m[left] = True
    m[right] = True
    return m


def doc_metrics(predicted: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    tp = int((predicted & truth).sum())
    p = tp / max(int(predicted.sum()), 1)
    r = tp / max(int(truth.sum()), 1)
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": p, "recall": r, "f1": f, "predicted": int(predicted.sum()), "tp": tp}
