"""Evaluation of a scorer on held-out labels: ROC AUC, F1, a calibration table.

Pure numpy, so benchmarks and tests need nothing else. AUC uses the rank-sum (Mann-Whitney)
formula with ties averaged, which equals the area under the ROC curve exactly.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


def roc_auc(y: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve; ``y`` in {0,1}, higher ``score`` = more likely positive."""
    y = np.asarray(y).astype(bool)
    s = np.asarray(score, dtype=np.float64)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"AUC needs both classes; got {n_pos} positives and {n_neg} negatives")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), dtype=np.float64)
    sorted_s = s[order]
    # average ranks over ties
    uniq, start, counts = np.unique(sorted_s, return_index=True, return_counts=True)
    avg = start + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def f1_at(y: np.ndarray, score: np.ndarray, threshold: float) -> float:
    """F1 of the positive class when predicting positive for ``score >= threshold``."""
    y = np.asarray(y).astype(bool)
    pred = np.asarray(score) >= threshold
    tp = int((pred & y).sum())
    fp = int((pred & ~y).sum())
    fn = int((~pred & y).sum())
    return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)


def best_f1(y: np.ndarray, score: np.ndarray) -> tuple[float, float]:
    """(best F1 over all thresholds, the threshold) — an optimistic but comparable figure."""
    y = np.asarray(y).astype(bool)
    s = np.asarray(score, dtype=np.float64)
    order = np.argsort(-s, kind="mergesort")
    ys, ss = y[order], s[order]
    tp = np.cumsum(ys)
    fp = np.cumsum(~ys)
    fn = ys.sum() - tp
    f1 = 2 * tp / np.maximum(2 * tp + fp + fn, 1)
    # only cut between distinct scores
    last_of_run = np.r_[ss[1:] != ss[:-1], True]
    f1 = np.where(last_of_run, f1, -1)
    i = int(np.argmax(f1))
    return float(f1[i]), float(ss[i])


@dataclass
class CalibrationBin:
    lo: float
    hi: float
    count: int
    mean_score: float
    frac_positive: float


def calibration_table(y: np.ndarray, prob: np.ndarray, bins: int = 10) -> list[CalibrationBin]:
    """Equal-width bins of predicted probability with the observed positive rate in each.

    A calibrated scorer has ``frac_positive ≈ mean_score`` in every bin.
    """
    y = np.asarray(y).astype(bool)
    p = np.clip(np.asarray(prob, dtype=np.float64), 0.0, 1.0)
    edges = np.linspace(0.0, 1.0, bins + 1)
    idx = np.minimum(np.searchsorted(edges, p, side="right") - 1, bins - 1)
    out = []
    for b in range(bins):
        m = idx == b
        n = int(m.sum())
        out.append(
            CalibrationBin(
                float(edges[b]),
                float(edges[b + 1]),
                n,
                float(p[m].mean()) if n else float("nan"),
                float(y[m].mean()) if n else float("nan"),
            )
        )
    return out


def expected_calibration_error(table: list[CalibrationBin]) -> float:
    """Count-weighted mean |observed − predicted| over the calibration bins."""
    total = sum(b.count for b in table)
    if total == 0:
        return float("nan")
    return float(
        sum(b.count * abs(b.frac_positive - b.mean_score) for b in table if b.count) / total
    )


def evaluate(y: np.ndarray, score: np.ndarray, prob: np.ndarray | None = None) -> dict:
    """AUC, F1 at 0.5 (when ``prob`` is given), best F1, calibration (when ``prob``)."""
    auc = roc_auc(y, score)
    bf1, thr = best_f1(y, score)
    out: dict = {"n": int(len(y)), "positives": int(np.sum(y)), "auc": auc, "best_f1": bf1,
                 "best_f1_threshold": thr}
    if prob is not None:
        cal = calibration_table(y, prob)
        out["f1@0.5"] = f1_at(y, prob, 0.5)
        out["ece"] = expected_calibration_error(cal)
        out["calibration"] = [asdict(b) for b in cal]
    return out


def format_calibration(table: list[dict]) -> str:
    """Markdown table of a calibration table (as dicts)."""
    lines = ["| bin | n | mean predicted | observed positive |", "|---|---:|---:|---:|"]
    for b in table:
        if b["count"] == 0:
            continue
        lines.append(
            f"| {b['lo']:.1f}–{b['hi']:.1f} | {b['count']} | {b['mean_score']:.3f} | "
            f"{b['frac_positive']:.3f} |"
        )
    return "\n".join(lines)
