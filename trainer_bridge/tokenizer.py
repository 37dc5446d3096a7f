"""Tokenizers for the bundled trainer: train a byte-level BPE on a snapshot, or load a folder.

A trained tokenizer is stored with the snapshot (``<snapshot>/tokenizer/tokenizer.json``), so
every model trained on that snapshot shares it and a teacher/student pair can be distilled.
A local Hugging Face tokenizer folder (anything with a ``tokenizer.json``) works the same way.

Byte-level BPE never meets an unknown character; with 4,096–8,192 merges it compresses
English prose to ~4 characters per token, enough for CPU-sized models.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from trainer_bridge.snapshot import read_manifest, shard_files

EOS = "<|endoftext|>"
TOKENIZER_FILE = "tokenizer.json"


def _iter_texts(snapshot: str | Path, max_chars: int, batch: int = 1000) -> Iterator[list[str]]:
    import pyarrow.parquet as pq

    manifest = read_manifest(snapshot)
    seen = 0
    for path in shard_files(snapshot, manifest):
        pf = pq.ParquetFile(path)
        for rb in pf.iter_batches(batch_size=batch, columns=["text"]):
            texts = rb.column(0).to_pylist()
            out = []
            for t in texts:
                out.append(t)
                seen += len(t)
                if seen >= max_chars:
                    break
            yield out
            if seen >= max_chars:
                return


def train_tokenizer(
    snapshot: str | Path,
    output: str | Path | None = None,
    vocab_size: int = 8192,
    max_chars: int = 50_000_000,
) -> Path:
    """Train a byte-level BPE on up to ``max_chars`` characters of ``snapshot``; return its folder.

    Written to ``output`` or, by default, ``<snapshot>/tokenizer/``. Besides ``tokenizer.json``
    it writes ``tokenizer_config.json`` and ``special_tokens_map.json`` so that
    ``transformers.AutoTokenizer`` loads the same folder (the HF export copies it).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    out = Path(output) if output is not None else Path(snapshot) / "tokenizer"
    out.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_iter_texts(snapshot, max_chars), trainer=trainer)
    tok.save(str(out / TOKENIZER_FILE))
    write_hf_tokenizer_files(out)
    return out


def write_hf_tokenizer_files(folder: Path) -> None:
    """The small JSON files ``transformers`` wants beside ``tokenizer.json``."""
    cfg: dict[str, Any] = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": EOS,
        "eos_token": EOS,
        "unk_token": EOS,
        "model_max_length": 1_000_000,
        "clean_up_tokenization_spaces": False,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    special = {"bos_token": EOS, "eos_token": EOS, "unk_token": EOS}
    (folder / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n")


def tokenizer_file(path: str | Path) -> Path:
    """``tokenizer.json`` inside a tokenizer folder, a snapshot folder, or the file itself."""
    p = Path(path)
    for cand in (p, p / TOKENIZER_FILE, p / "tokenizer" / TOKENIZER_FILE):
        if cand.is_file():
            return cand
    raise FileNotFoundError(
        f"no tokenizer.json at {p}: pass a tokenizer folder (a local Hugging Face one works), "
        "or train one with `assay train tokenizer SNAPSHOT`"
    )


class TextTokenizer:
    """A thin wrapper over ``tokenizers.Tokenizer``: encode batches, know EOS and a content hash."""

    def __init__(self, path: str | Path) -> None:
        from tokenizers import Tokenizer

        self.path = tokenizer_file(path)
        raw = self.path.read_bytes()
        self.sha256 = hashlib.sha256(raw).hexdigest()
        self.tok = Tokenizer.from_str(raw.decode("utf-8"))
        self.vocab_size = self.tok.get_vocab_size()
        eos = self.tok.token_to_id(EOS)
        if eos is None:  # a foreign HF tokenizer: fall back to its own end-of-text token
            for cand in ("</s>", "<|end_of_text|>", "<eos>", "<|im_end|>"):
                eos = self.tok.token_to_id(cand)
                if eos is not None:
                    break
        if eos is None:
            raise ValueError(f"{self.path}: no end-of-text token ({EOS!r} or '</s>') in vocab")
        self.eos_id = int(eos)

    @property
    def folder(self) -> Path:
        return self.path.parent

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self.tok.encode_batch(texts, add_special_tokens=False)]

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(text, add_special_tokens=False).ids

    def decode(self, ids: list[int]) -> str:
        return self.tok.decode(ids)
