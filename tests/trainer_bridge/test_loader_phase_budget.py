"""Curriculum phases scaled to the run's budget in the loader (ShardLoader(phase_budget=...)).

The curriculum arm of the lever ablation must differ from its baseline only in order: the same
pool, the same number of tokens. These tests pin what that needs: each phase owns its share of
the budget's positions, samples them from *all* of its documents, the anneal phase starts at
0.9 x budget (where the trainer's WSD decay starts), and resume stays exact.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from curriculum.build import build_curriculum
from trainer_bridge.loader import ShardLoader
from trainer_bridge.trainer import TrainConfig, Trainer

T, B, STEPS = 32, 8, 40
BUDGET = STEPS * B * T  # 10,240 tokens: a sliver of the fixture snapshot


def _same(a: dict, b: dict) -> bool:
    return all(torch.equal(a[k], b[k]) for k in ("input_ids", "labels", "weights"))


@pytest.fixture(scope="module")
def whole(real_snapshot: Path, tokenizer_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("phase_budget") / "cur"
    build_curriculum(real_snapshot, out, "stable:0.9,anneal:0.1", seed=0,
                     tokenizer=str(tokenizer_dir))
    return out


def _start_doc(ld: ShardLoader, s: int) -> int:
    order, ends = ld._epoch(0)
    return int(order[int(np.searchsorted(ends, s * ld.seq_len, side="right"))])


def test_phases_own_their_share_of_the_budget_and_sample_all_their_docs(
    whole: Path, real_snapshot: Path, tokenizer_dir: Path, tmp_path: Path
) -> None:
    ld = ShardLoader(whole, tokenizer_dir, seq_len=T, batch_size=B, seed=1, shuffle_buffer=0,
                     phase_budget=BUDGET)
    assert ld.stream_seqs * T > 20 * BUDGET  # the snapshot is far larger than the budget
    assert ld.seqs_per_epoch == BUDGET // T and ld.batches_per_epoch == STEPS
    n_stable = round(0.9 * BUDGET / T)
    assert ld.phase_token_starts() == {"stable": 0, "anneal": n_stable * T}
    (a0, b0), (a1, b1) = ld.segments()
    seqs = [ld.sequence_at(0, p) for p in range(ld.seqs_per_epoch)]
    assert all(a0 <= s < b0 for s in seqs[:n_stable])  # stable positions read stable text
    assert all(a1 <= s < b1 for s in seqs[n_stable:])  # anneal positions read anneal text
    assert len(set(seqs)) == len(seqs)  # no sequence twice (each phase is larger than its share)
    stable_docs = {_start_doc(ld, s) for s in seqs[:n_stable]}
    anneal_docs = {_start_doc(ld, s) for s in seqs[n_stable:]}
    assert set(ld.cache.phase[sorted(anneal_docs)]) == {ld.cache.phases.index("anneal")}
    # the anneal share really holds the best-scored docs (fixture: two quality levels)
    import pyarrow.parquet as pq

    q = np.concatenate([pq.read_table(whole / s["path"], columns=["curriculum.quality"])
                        .column(0).to_numpy() for s in ld.manifest["shards"]])
    assert q[sorted(anneal_docs)].min() == q.max()
    assert q[sorted(stable_docs)].mean() < q.max() - 0.2
    # the confounded form (the *snapshot* phased to the budget) draws its stable tokens from a
    # few whole docs; the loader-phased run samples the whole stable pool
    snap = tmp_path / "snap_phased"
    build_curriculum(real_snapshot, snap, "stable:0.9,anneal:0.1", seed=0,
                     budget_tokens=BUDGET, tokenizer=str(tokenizer_dir))
    old = ShardLoader(snap, tokenizer_dir, seq_len=T, batch_size=B, seed=1, shuffle_buffer=0)
    old_docs = {_start_doc(old, old.sequence_at(0, p)) for p in range(n_stable)}
    assert len(stable_docs) > 3 * len(old_docs), (len(stable_docs), len(old_docs))
    # another seed samples other sequences of the same phases
    other = ShardLoader(whole, tokenizer_dir, seq_len=T, batch_size=B, seed=2, shuffle_buffer=0,
                        phase_budget=BUDGET)
    assert [other.sequence_at(0, p) for p in range(n_stable)] != seqs[:n_stable]


def test_trainer_decays_where_the_anneal_share_starts(whole: Path, tokenizer_dir: Path,
                                                      tmp_path: Path) -> None:
    cfg = TrainConfig(snapshot=str(whole), out_dir=str(tmp_path / "run"),
                      tokenizer=str(tokenizer_dir), model=dict(n_layer=1, n_head=2, n_kv_head=1,
                      d_model=32), seq_len=T, batch_size=B, max_steps=STEPS, warmup_steps=2,
                      log_every=0, quiet=True, shuffle_buffer=0, phase_to_budget=True,
                      decay_frac=0.25)
    tr = Trainer(cfg)
    assert tr.data.phase_budget == BUDGET
    assert tr.decay_start == round(0.9 * BUDGET / T) * T // (B * T) == 36
    plain = Trainer(TrainConfig(**{**cfg.__dict__, "out_dir": str(tmp_path / "plain"),
                                   "phase_to_budget": False}))
    assert plain.decay_start == 30  # stream anneal lies beyond the run: the last 25 %


@pytest.mark.filterwarnings("ignore:This DataLoader will create")
def test_exact_resume_across_the_phase_switch(whole: Path, tokenizer_dir: Path) -> None:
    def mk(**kw: object) -> ShardLoader:
        args: dict = dict(seq_len=T, batch_size=B, seed=5, shuffle_buffer=0, phase_budget=BUDGET)
        args.update(kw)
        return ShardLoader(whole, tokenizer_dir, **args)

    a = mk()
    it = iter(a)
    for _ in range(34):  # the anneal phase starts at batch 36
        next(it)
    state = a.state_dict()
    expected = [next(it) for _ in range(8)]  # batches 34..41: crosses anneal and the epoch end
    assert [e["epoch"] for e in expected] == [0] * 6 + [1] * 2
    b = mk()
    b.load_state_dict(state)
    got = [x for _, x in zip(range(8), b)]
    assert [g["batch_index"] for g in got] == list(range(34, 42))
    assert all(_same(e, g) for e, g in zip(expected, got))
    c = mk()
    c.load_state_dict(state)
    assert all(_same(e, g) for e, g in zip(expected, [x for _, x in zip(range(8), c.dataloader(2))]))
    with pytest.raises(ValueError, match="phase_budget"):
        mk(phase_budget=None).load_state_dict(state)
    # epoch 1 is a new sample: its stable batches differ from epoch 0's
    assert not _same(a.batch(0), a.batch(STEPS))


def test_a_phase_smaller_than_its_share_is_reread_in_new_orders(
    real_snapshot: Path, tokenizer_dir: Path, tmp_path: Path
) -> None:
    cur = tmp_path / "half"
    build_curriculum(real_snapshot, cur, "stable:0.5,anneal:0.5", seed=0)
    probe = ShardLoader(cur, tokenizer_dir, seq_len=T, batch_size=B, shuffle_buffer=0)
    a1, b1 = probe.segments()[1]
    n_anneal = b1 - a1
    budget = 6 * n_anneal * T  # the anneal half of the budget = 3 passes over its sequences
    ld = ShardLoader(cur, tokenizer_dir, seq_len=T, batch_size=B, shuffle_buffer=0,
                     phase_budget=budget)
    start = ld.phase_token_starts()["anneal"] // T
    reads = [ld.sequence_at(0, p) for p in range(start, ld.seqs_per_epoch)]
    passes = [reads[k * n_anneal:(k + 1) * n_anneal] for k in range(3)]
    for p in passes:  # every pass reads each anneal sequence exactly once ...
        assert sorted(p) == list(range(a1, b1))
    assert passes[0] != passes[1] != passes[2]  # ... each in its own order


def test_phase_budget_needs_a_curriculum_snapshot(real_snapshot: Path, tokenizer_dir: Path) -> None:
    with pytest.raises(ValueError, match="not a curriculum snapshot"):
        ShardLoader(real_snapshot, tokenizer_dir, seq_len=T, batch_size=B, phase_budget=BUDGET)


def test_cli_phase_to_budget(whole: Path, real_snapshot: Path, tokenizer_dir: Path,
                             tmp_path: Path) -> None:
    import json

    from click.testing import CliRunner

    from trainer_bridge.cli import train

    args = ["--tokenizer", str(tokenizer_dir), "--layers", "1", "--d-model", "32", "--heads", "2",
            "--kv-heads", "1", "--seq-len", str(T), "--batch-size", str(B), "--steps", "4",
            "--warmup", "1", "--log-every", "0", "--shuffle-buffer", "0",
            "--phase-to-budget"]
    bad = CliRunner().invoke(train, ["pretrain", str(real_snapshot), str(tmp_path / "x"), *args])
    assert bad.exit_code == 2 and "not a curriculum snapshot" in bad.output
    ok = CliRunner().invoke(train, ["pretrain", str(whole), str(tmp_path / "ok"), *args])
    assert ok.exit_code == 0, ok.output
    state = __import__("torch").load(tmp_path / "ok" / "checkpoint.pt", weights_only=False)
    assert state["loader"]["phase_budget"] == 4 * B * T
    assert json.loads(ok.output[ok.output.index("{"):])["final_loss"] > 0
