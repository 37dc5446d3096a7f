"""Shared fixtures: a small real-text snapshot (quality_train.jsonl.zst) and a BPE trained on it."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from curriculum.snapshot_io import read_jsonl_texts, table_from_records, write_snapshot

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def make_real_snapshot(out: Path, every: int = 5, shards: int = 2, name: str = "fixture") -> Path:
    """Every ``every``-th item of quality_train (prose + boilerplate), with a ``weight`` column."""
    src = DATA / "quality_train.jsonl.zst"
    if not src.exists():
        pytest.skip(f"real data not found at {src}")
    recs = read_jsonl_texts(src)[::every]
    table = table_from_records(recs, source_default="quality_train")
    # SoftDedup-like weights: a deterministic function of the doc, so they can be checked.
    weights = [0.5 if r["label"] == 0 else 1.0 for r in recs]
    table = table.append_column("weight", pa.array(weights, pa.float32()))
    table = table.append_column(
        "quality.fasttext", pa.array([0.2 + 0.6 * r["label"] for r in recs], pa.float32())
    )
    step = -(-table.num_rows // shards)
    parts = [(f"s{i}", table.slice(i * step, step)) for i in range(shards)]
    write_snapshot(out, parts, name=name)
    return out


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread() -> None:
    """One intra-op thread: tiny models gain nothing from two, and on a shared 2-core machine
    spinning OpenMP threads slow every test down several-fold."""
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def real_snapshot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_real_snapshot(tmp_path_factory.mktemp("snap") / "snapshot")


@pytest.fixture(scope="session")
def tokenizer_dir(real_snapshot: Path) -> Path:
    from trainer_bridge.tokenizer import train_tokenizer

    return train_tokenizer(real_snapshot, vocab_size=512)


@pytest.fixture(scope="session")
def trained_run(
    real_snapshot: Path, tokenizer_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A tiny model trained for a few seconds on the real-text fixture (its output folder)."""
    from trainer_bridge.trainer import TrainConfig, train

    out = tmp_path_factory.mktemp("trained") / "run"
    train(
        TrainConfig(
            snapshot=str(real_snapshot),
            out_dir=str(out),
            tokenizer=str(tokenizer_dir),
            model=dict(n_layer=2, n_head=4, n_kv_head=2, d_model=64),
            seq_len=64,
            batch_size=8,
            max_steps=60,
            warmup_steps=6,
            log_every=0,
            quiet=True,
        )
    )
    return out
