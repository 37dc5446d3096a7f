"""Held-out evaluation: fixed token sequences from a text file or snapshot, mean next-token loss.

The eval set is read once, tokenized with the model's tokenizer, packed into ``n_seqs``
sequences of ``seq_len + 1`` tokens (docs separated by EOS) and kept as one tensor, so every
evaluation of every run sees exactly the same tokens. Texts are taken in the order of a hash of
their content (not file order), so the first ``n_seqs`` rows sample the whole file rather than
its first few long documents, and the choice does not depend on how the file was written;
``per_doc`` caps the tokens one document may contribute.

:func:`score_choices` scores multiple-choice items (context + options, one correct) by the
likelihood the model gives each option: accuracy by summed log-probability and by
log-probability per character of the option (OLMES' ``acc_per_char``), plus the mean
probability of the correct option normalised over the options (the continuous metric DataDecide
found to rank data recipes best at small scale).
"""

from __future__ import annotations

import hashlib
import heapq
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trainer_bridge.snapshot import read_manifest, shard_files
from trainer_bridge.tokenizer import TextTokenizer


def parse_where(items: tuple[str, ...] | list[str] | None) -> dict[str, Any]:
    """``["label=1", "kind=doc_prose"]`` → ``{"label": 1, "kind": "doc_prose"}`` (JSON values)."""
    out: dict[str, Any] = {}
    for item in items or ():
        if "=" not in item:
            raise ValueError(f"filter {item!r} must look like FIELD=VALUE (e.g. label=1)")
        k, v = item.split("=", 1)
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


def text_hash(text: str) -> int:
    """The key texts are ordered by: 64 bits of BLAKE2b of the UTF-8 text."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "big")


def read_texts(
    path: str | Path,
    where: dict[str, Any] | None = None,
    max_chars: int | None = None,
    order: str = "hash",
) -> list[str]:
    """Texts from a snapshot folder, a Parquet file, or a JSONL(.gz/.zst) file.

    ``where`` keeps only records whose fields equal the given values (e.g. ``{"label": 1}``
    picks the well-written prose of ``quality_train.jsonl.zst``). ``order="hash"`` (default)
    returns them sorted by :func:`text_hash`, and with ``max_chars`` the texts of smallest hash
    that together reach ``max_chars`` (a streaming bottom-k: memory is bounded by
    ``max_chars``, not by the file); ``order="file"`` keeps file order and stops at
    ``max_chars``.
    """
    if order not in ("hash", "file"):
        raise ValueError(f"order={order!r}: use 'hash' or 'file'")
    p = Path(path)
    where = where or {}
    texts: list[str] = []
    total = 0
    heap: list[tuple[int, str]] = []  # (-hash, text): the kept texts, largest hash on top

    def take(rec: dict[str, Any]) -> bool:
        nonlocal total
        if any(rec.get(k) != v for k, v in where.items()):
            return True
        t = rec["text"]
        if order == "hash":
            heapq.heappush(heap, (-text_hash(t), t))
            total += len(t)
            while max_chars is not None and total - len(heap[0][1]) >= max_chars:
                total -= len(heapq.heappop(heap)[1])
            return True
        texts.append(t)
        total += len(t)
        return max_chars is None or total < max_chars

    def done() -> list[str]:
        if order == "hash":
            texts.extend(t for _, t in sorted(heap, reverse=True))
        return texts

    if p.is_dir() or p.suffix == ".parquet":
        import pyarrow.parquet as pq

        files = shard_files(p, read_manifest(p)) if p.is_dir() else [p]
        for f in files:
            for rec in pq.read_table(f, columns=None).to_pylist():
                if not take(rec):
                    return done()
        return done()
    if p.suffix == ".zst":
        import zstandard

        fh: Any = io.TextIOWrapper(
            zstandard.ZstdDecompressor().stream_reader(open(p, "rb")), encoding="utf-8"
        )
    elif p.suffix == ".gz":
        import gzip

        fh = gzip.open(p, "rt", encoding="utf-8")
    else:
        fh = open(p, encoding="utf-8")
    with fh:
        for line in fh:
            if line.strip() and not take(json.loads(line)):
                break
    done()
    if not texts:
        raise ValueError(f"no texts read from {p} with filter {where}")
    return texts


def build_eval_tensor(
    texts: list[str],
    tokenizer: TextTokenizer,
    seq_len: int,
    n_seqs: int,
    per_doc: int | None = None,
) -> torch.Tensor:
    """Pack texts (each followed by EOS) into at most ``n_seqs`` rows of ``seq_len + 1`` tokens.

    ``per_doc`` keeps only the first ``per_doc`` tokens of each text (``seq_len + 1``: about
    one row per document, so ``n_seqs`` rows sample ``n_seqs`` documents).
    """
    need = n_seqs * (seq_len + 1)
    flat: list[int] = []
    for ids in tokenizer.encode_batch(texts):
        flat.extend(ids if per_doc is None else ids[: max(1, per_doc - 1)])
        flat.append(tokenizer.eos_id)
        if len(flat) >= need:
            break
    n = len(flat) // (seq_len + 1)
    if n == 0:
        raise ValueError(
            f"eval texts give {len(flat)} tokens, fewer than one sequence of {seq_len}"
        )
    return torch.tensor(flat[: n * (seq_len + 1)], dtype=torch.long).view(n, seq_len + 1)


@torch.no_grad()
def evaluate(
    model: torch.nn.Module, data: torch.Tensor, batch_size: int = 16, device: str = "cpu"
) -> float:
    """Mean next-token cross-entropy (nats) of ``model`` over the rows of ``data``."""
    import torch.nn.functional as F

    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(data), batch_size):
        chunk = data[i : i + batch_size].to(device)
        with _autocast(device):
            logits = model(chunk[:, :-1])
        nll = F.cross_entropy(
            logits.float().reshape(-1, logits.shape[-1]), chunk[:, 1:].reshape(-1), reduction="sum"
        )
        total += float(nll)
        count += chunk[:, 1:].numel()
    model.train(was_training)
    return total / count


def read_items(path: str | Path) -> list[dict[str, Any]]:
    """Multiple-choice items (JSONL: ``task``, ``context``, ``options``, ``answer``)."""
    items = []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            it = json.loads(line)
            for k in ("task", "context", "options", "answer"):
                if k not in it:
                    raise ValueError(f"{path}:{n}: item has no {k!r} field")
            if not 0 <= int(it["answer"]) < len(it["options"]) or len(it["options"]) < 2:
                raise ValueError(f"{path}:{n}: answer {it['answer']} is not an option index")
            items.append(it)
    return items


@torch.no_grad()
def score_choices(
    model: torch.nn.Module,
    tokenizer: TextTokenizer,
    items: list[dict[str, Any]],
    max_len: int,
    batch_size: int = 64,
    device: str = "cpu",
) -> dict[str, dict[str, float]]:
    """Per task: ``acc`` (summed log-prob), ``acc_per_char`` and ``p_correct`` (see above).

    Each option is scored as a continuation of the context: log-probabilities of the option's
    tokens given the context, the context cut from the left so that both fit ``max_len``.
    """
    was_training = model.training
    model.eval()
    rows: list[tuple[list[int], int]] = []  # (ids, number of option tokens at the end)
    ctx_ids = tokenizer.encode_batch([it["context"] for it in items])
    opt_ids = tokenizer.encode_batch([o for it in items for o in it["options"]])
    k = 0
    for it, c in zip(items, ctx_ids):
        for _ in it["options"]:
            o = opt_ids[k][: max_len - 1]
            k += 1
            ids = (c + o)[-(max_len + 1) :]
            rows.append((ids, len(o)))
    scores = np.zeros(len(rows))
    for i in range(0, len(rows), batch_size):
        chunk = rows[i : i + batch_size]
        width = max(len(r[0]) for r in chunk)
        x = torch.zeros((len(chunk), width), dtype=torch.long)
        for j, (ids, _) in enumerate(chunk):
            x[j, : len(ids)] = torch.tensor(ids)
        with _autocast(device):
            logits = model(x[:, :-1].to(device))
        logp = torch.log_softmax(logits.float(), -1).cpu()
        for j, (ids, n_opt) in enumerate(chunk):
            pos = torch.arange(len(ids) - 1 - n_opt, len(ids) - 1)
            scores[i + j] = float(logp[j, pos, x[j, pos + 1]].sum())
    model.train(was_training)
    out: dict[str, dict[str, list[float]]] = {}
    k = 0
    for it in items:
        n = len(it["options"])
        s = scores[k : k + n]
        chars = np.array([max(1, len(o)) for o in it["options"]], dtype=np.float64)
        k += n
        a = int(it["answer"])
        p = np.exp(s - s.max())
        r = out.setdefault(it["task"], {"acc": [], "acc_per_char": [], "p_correct": []})
        r["acc"].append(float(int(np.argmax(s)) == a))
        r["acc_per_char"].append(float(int(np.argmax(s / chars)) == a))
        r["p_correct"].append(float(p[a] / p.sum()))
    return {
        t: {**{m: float(np.mean(v)) for m, v in r.items()}, "items": len(r["acc"])}
        for t, r in out.items()
    }


def _autocast(device: str) -> Any:
    if device.startswith("cuda"):
        return torch.autocast("cuda", dtype=torch.bfloat16)
    import contextlib

    return contextlib.nullcontext()
