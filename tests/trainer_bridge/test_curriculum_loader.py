"""A curriculum snapshot drives the loader's order and the WSD decay start."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from curriculum.build import build_curriculum
from curriculum.snapshot_io import read_snapshot
from trainer_bridge.loader import ShardLoader
from trainer_bridge.trainer import TrainConfig, Trainer


def test_loader_follows_curriculum_and_wsd_decays_on_anneal(
    real_snapshot: Path, tokenizer_dir: Path, tmp_path: Path
) -> None:
    cur = tmp_path / "cur"
    build_curriculum(real_snapshot, cur, phases="stable:0.8,anneal:0.2", seed=0)
    ds = ShardLoader(cur, tokenizer_dir, seq_len=32, batch_size=4)
    assert ds.curriculum and ds.cache.phases == ["stable", "anneal"]
    # epoch order = the curriculum's order column, for every epoch
    order = ds.doc_order(0)
    assert np.array_equal(ds.cache.order[order], np.arange(ds.cache.n_docs))
    assert np.array_equal(order, ds.doc_order(1))
    # the stream position where anneal starts = tokens of all stable docs
    lengths = np.diff(ds.cache.offsets)
    stable_tokens = int(lengths[ds.cache.phase == 0].sum())
    assert ds.phase_token_starts() == {"stable": 0, "anneal": stable_tokens}
    # first batch starts with the first stable doc of the curriculum
    t = read_snapshot(cur, ["text", "order"])
    first = t.column("text")[0].as_py()
    assert (
        ds.tokenizer.decode(ds.batch(0)["input_ids"][0].tolist())
        == first[: len(ds.tokenizer.decode(ds.batch(0)["input_ids"][0].tolist()))]
    )
    # WSD: LR decays exactly from the step where the anneal tokens begin
    tokens_per_step = 4 * 32
    epoch_steps = ds.batches_per_epoch
    cfg = TrainConfig(
        snapshot=str(cur),
        out_dir=str(tmp_path / "run"),
        tokenizer=str(tokenizer_dir),
        model=dict(n_layer=1, n_head=2, n_kv_head=1, d_model=32),
        seq_len=32,
        batch_size=4,
        max_steps=epoch_steps,
        warmup_steps=2,
        quiet=True,
    )
    tr = Trainer(cfg)
    assert tr.decay_start == stable_tokens // tokens_per_step
