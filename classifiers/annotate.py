"""The FineWeb-Edu recipe: an LLM judge labels a sample, a cheap classifier learns the labels,
and the classifier scores the whole corpus.

1. :func:`sample_texts` draws ``n`` documents uniformly (reservoir sampling, seeded: bounded
   memory however large the input);
2. :func:`annotate` asks a :class:`~classifiers.judge.Backend` for a 0–5 educational score
   per document (prompt: :data:`~classifiers.judge.EDU_PROMPT`); unparseable answers get
   ``score = None`` and are left out of training (and counted);
3. :func:`train_on_annotations` binarises (``score >= positive_min`` → ``1``, FineWeb-Edu
   keeps score ≥ 3) and trains ``classify.fasttext`` or ``classify.embedding``;
4. the CLI then scores any input with the trained model (``--apply``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from classifiers.data import LabelledTexts, iter_records, split_holdout
from classifiers.judge import Backend, build_prompt, parse_score


def sample_texts(path: str | Path, n: int, seed: int = 0, text_field: str = "text",
                 min_chars: int = 1) -> list[str]:
    """``n`` texts drawn uniformly from ``path`` (reservoir sampling, Algorithm R)."""
    rng = np.random.default_rng(seed)
    res: list[str] = []
    seen = 0
    for rec in iter_records(path):
        text = rec.get(text_field)
        if not text or len(text) < min_chars:
            continue
        seen += 1
        if len(res) < n:
            res.append(text)
        else:
            j = int(rng.integers(0, seen))
            if j < n:
                res[j] = text
    return res


def annotate(texts: Sequence[str], backend: Backend, max_chars: int = 2000,
             batch_size: int = 8, progress: bool = True) -> list[dict[str, Any]]:
    """[{text, score (0–5 or None), response}] for each text, in order."""
    from tqdm import tqdm

    out: list[dict[str, Any]] = []
    bar = tqdm(total=len(texts), desc="judging", unit="doc", disable=not progress)
    for i in range(0, len(texts), batch_size):
        chunk = list(texts[i:i + batch_size])
        responses = backend.generate([build_prompt(t, max_chars) for t in chunk])
        for t, r in zip(chunk, responses, strict=True):
            out.append({"text": t, "score": parse_score(r), "response": r})
        bar.update(len(chunk))
    bar.close()
    return out


def write_annotations(rows: list[dict[str, Any]], path: str | Path, positive_min: int) -> None:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for r in rows:
            label = None if r["score"] is None else int(r["score"] >= positive_min)
            fh.write(json.dumps({**r, "label": label}, ensure_ascii=False) + "\n")
    os.replace(tmp, p)


def train_on_annotations(rows: list[dict[str, Any]], model_out: str | Path,
                         classifier: str = "fasttext", positive_min: int = 3,
                         holdout: float = 0.2, seed: int = 0) -> dict[str, Any]:
    """Train a binary classifier on the judge's labels; returns its metadata/held-out metrics."""
    usable = [r for r in rows if r["score"] is not None]
    labels = [str(int(r["score"] >= positive_min)) for r in usable]
    if len(set(labels)) < 2:
        raise ValueError(
            f"the judge gave {len(usable)} usable scores, all on one side of positive_min="
            f"{positive_min} ({sorted({r['score'] for r in usable})}); annotate more documents "
            f"or change --positive-min"
        )
    data = LabelledTexts([r["text"] for r in usable], labels)
    tr, ho = split_holdout(data, holdout, seed) if holdout > 0 else (data, None)
    if ho is not None and len(set(ho.labels)) < 2:
        ho = None  # too few to evaluate; train on the split anyway
    if classifier == "fasttext":
        from classifiers.fasttext_model import train_fasttext

        meta = train_fasttext(tr, model_out, positive_label="1", heldout=ho)
        return {"n_train": meta.n_train, "heldout": meta.heldout}
    if classifier == "embedding":
        from classifiers.embedding import train_embedding_head

        head = train_embedding_head(tr.texts, tr.labels, model_out, "1",
                                    (ho.texts, ho.labels) if ho is not None else None)
        return {"n_train": head["n_train"], "heldout": head.get("heldout", {})}
    raise ValueError(f"classifier must be 'fasttext' or 'embedding', got {classifier!r}")
