"""Exact near-duplicate ground truth and doc-level precision/recall (for tests and the bench).

Ground truth is every pair of documents whose word 5-gram shingle sets (the same shingles
MinHash sees, :func:`dedup.signature.signatures_and_sets`) have exact Jaccard >= threshold. It is
found without comparing all N² pairs by *prefix filtering*, which is exact: order every set by
one global order (here: hash value); if J(x, y) >= t then x and y share an element among the
first ``|x| - ceil(t * |x|) + 1`` elements of x and the first ``|y| - ceil(t * |y|) + 1`` of y.
So candidates come from an inverted index over prefixes (plus the length filter
``t * |x| <= |y| <= |x| / t``) and every candidate is verified exactly.

Doc-level metrics: a document is a *true duplicate* if it has at least one partner with
J >= threshold, and *predicted* if the method put it in a cluster of size >= 2. Precision =
|predicted ∩ true| / |predicted|, recall = |predicted ∩ true| / |true|.
"""

from __future__ import annotations

import math

import numpy as np

_KERNELS: dict[str, object] = {}


def _kernels() -> dict[str, object]:
    if _KERNELS:
        return _KERNELS
    from dedup import kernels as kn

    _KERNELS["group_pairs"] = kn.group_pairs
    return _KERNELS


def exact_pairs(
    flat: np.ndarray, offsets: np.ndarray, threshold: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All doc pairs (i < j) with exact Jaccard >= ``threshold``: (left, right, jaccard).

    ``flat``/``offsets`` are sorted unique shingle sets as returned by
    :func:`dedup.signature.signatures_and_sets`.
    """
    from dedup.signature import jaccard_pairs

    sizes = np.diff(offsets)
    n = sizes.size
    prefix = np.where(sizes > 0, sizes - np.ceil(threshold * sizes - 1e-9).astype(np.int64) + 1, 0)
    prefix = np.minimum(prefix, sizes)
    doc_of = np.repeat(np.arange(n, dtype=np.int64), prefix)
    starts = np.repeat(offsets[:-1], prefix)
    within = np.arange(doc_of.size, dtype=np.int64) - np.repeat(np.cumsum(prefix) - prefix, prefix)
    tokens = flat[starts + within]
    order = np.lexsort((doc_of, tokens))
    left, right = _kernels()["group_pairs"](  # type: ignore[operator]
        tokens[order], doc_of[order], sizes, threshold
    )
    if left.size == 0:
        return left, right, np.zeros(0)
    code = np.unique(left * n + right)
    left, right = code // n, code % n
    j = jaccard_pairs(flat, offsets, left, right)
    keep = j >= threshold
    return left[keep], right[keep], j[keep]


def true_duplicate_docs(n_docs: int, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Boolean mask of documents that have at least one ground-truth partner."""
    mask = np.zeros(n_docs, dtype=bool)
    mask[left] = True
    mask[right] = True
    return mask


def doc_metrics(predicted: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Doc-level precision, recall and F1 of a predicted duplicate mask against the truth."""
    tp = int((predicted & truth).sum())
    p = tp / max(int(predicted.sum()), 1)
    r = tp / max(int(truth.sum()), 1)
    f1 = 2 * p * r / (p + r) if p + r else 0.0
    return {
        "precision": p,
        "recall": r,
        "f1": f1,
        "predicted": int(predicted.sum()),
        "true": int(truth.sum()),
    }


def prefix_length(size: int, threshold: float) -> int:
    """Prefix-filter length for a set of ``size`` elements (exposed for tests)."""
    return size - math.ceil(threshold * size - 1e-9) + 1 if size else 0
