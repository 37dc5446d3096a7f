"""Held-out evaluation: fixed token sequences from a text file or snapshot, mean next-token loss.

The eval set is read once, tokenized with the model's tokenizer, packed into ``n_seqs``
sequences of ``seq_len + 1`` tokens (docs separated by EOS) and kept as one tensor, so every
evaluation of every run sees exactly the same tokens.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

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


def read_texts(
    path: str | Path, where: dict[str, Any] | None = None, max_chars: int | None = None
) -> list[str]:
    """Texts from a snapshot folder, a Parquet file, or a JSONL(.gz/.zst) file.

    ``where`` keeps only records whose fields equal the given values (e.g. ``{"label": 1}``
    picks the well-written prose of ``quality_train.jsonl.zst``).
    """
    p = Path(path)
    where = where or {}
    texts: list[str] = []
    total = 0

    def take(rec: dict[str, Any]) -> bool:
        nonlocal total
        if any(rec.get(k) != v for k, v in where.items()):
            return True
        texts.append(rec["text"])
        total += len(rec["text"])
        return max_chars is None or total < max_chars

    if p.is_dir() or p.suffix == ".parquet":
        import pyarrow.parquet as pq

        files = shard_files(p, read_manifest(p)) if p.is_dir() else [p]
        for f in files:
            for rec in pq.read_table(f, columns=None).to_pylist():
                if not take(rec):
                    return texts
        return texts
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
    if not texts:
        raise ValueError(f"no texts read from {p} with filter {where}")
    return texts


def build_eval_tensor(
    texts: list[str], tokenizer: TextTokenizer, seq_len: int, n_seqs: int
) -> torch.Tensor:
    """Pack texts (each followed by EOS) into at most ``n_seqs`` rows of ``seq_len + 1`` tokens."""
    need = n_seqs * (seq_len + 1)
    flat: list[int] = []
    for ids in tokenizer.encode_batch(texts):
        flat.extend(ids)
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


def _autocast(device: str) -> Any:
    if device.startswith("cuda"):
        return torch.autocast("cuda", dtype=torch.bfloat16)
    import contextlib

    return contextlib.nullcontext()
