"""ShardLoader's sequence-level shuffle: a bijection, exact resume, phases kept, many docs seen."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from trainer_bridge.loader import ShardLoader, feistel_permute


def _same(a: dict, b: dict) -> bool:
    return all(torch.equal(a[k], b[k]) for k in ("input_ids", "labels", "weights"))


@pytest.mark.parametrize("n", [1, 2, 3, 7, 64, 1000, 4097])
def test_feistel_is_a_permutation(n: int) -> None:
    img = [feistel_permute(i, n, key=42) for i in range(n)]
    assert sorted(img) == list(range(n))
    if n >= 64:  # and it actually shuffles: few fixed points, keys differ
        assert sum(i == j for i, j in enumerate(img)) < n // 8
        assert img != [feistel_permute(i, n, key=43) for i in range(n)]


def test_shuffled_epoch_covers_every_sequence_once(real_snapshot: Path, tokenizer_dir: Path) -> None:
    for buf in (0, 50):
        ld = ShardLoader(real_snapshot, tokenizer_dir, seq_len=32, batch_size=4, seed=3,
                         shuffle_buffer=buf)
        n = ld.seqs_per_epoch
        pos = [ld.sequence_at(0, p) for p in range(n)]
        assert sorted(pos) == list(range(n))
        assert pos != list(range(n))
        if buf:  # windows of 50 stay windows of 50
            assert all(p // 50 == q // 50 for p, q in zip(range(n), pos))
        assert pos != [ld.sequence_at(1, p) for p in range(n)]  # a new order each epoch


@pytest.mark.filterwarnings("ignore:This DataLoader will create")
def test_exact_resume_with_shuffle(real_snapshot: Path, tokenizer_dir: Path) -> None:
    def mk() -> ShardLoader:
        return ShardLoader(real_snapshot, tokenizer_dir, seq_len=32, batch_size=4, seed=7,
                           shuffle_buffer=0)

    a = mk()
    it = iter(a)
    for _ in range(6):
        next(it)
    state = a.state_dict()
    expected = [next(it) for _ in range(4)]
    b = mk()
    b.load_state_dict(state)
    got = [x for _, x in zip(range(4), b)]
    assert [g["batch_index"] for g in got] == [6, 7, 8, 9]
    assert all(_same(e, g) for e, g in zip(expected, got))
    # the same batches through 2 DataLoader workers
    c = mk()
    c.load_state_dict(state)
    multi = [x for _, x in zip(range(4), c.dataloader(2))]
    assert all(_same(e, g) for e, g in zip(expected, multi))
    # a loader saved without shuffling refuses a shuffled resume (and vice versa)
    plain = ShardLoader(real_snapshot, tokenizer_dir, seq_len=32, batch_size=4, seed=7)
    with pytest.raises(ValueError, match="shuffle_buffer"):
        plain.load_state_dict(state)
    # and the shuffled stream differs from the contiguous one
    assert not _same(expected[0], plain.batch(6))


def test_short_run_sees_many_more_documents(real_snapshot: Path, tokenizer_dir: Path) -> None:
    """The point of the buffer: 8 batches of the contiguous stream read a handful of docs."""

    def docs_seen(ld: ShardLoader, batches: int) -> int:
        order, ends = ld._epoch(0)
        seen = set()
        for g in range(batches):
            for i in range(ld.batch_size):
                s = ld.sequence_at(0, g * ld.batch_size + i)
                d0 = int(np.searchsorted(ends, s * ld.seq_len, side="right"))
                d1 = int(np.searchsorted(ends, (s + 1) * ld.seq_len, side="right"))
                seen.update(int(order[d]) for d in range(d0, min(d1, len(order) - 1) + 1))
        return len(seen)

    kw = dict(seq_len=64, batch_size=8, seed=0)
    flat = docs_seen(ShardLoader(real_snapshot, tokenizer_dir, **kw), 8)
    shuf = docs_seen(ShardLoader(real_snapshot, tokenizer_dir, shuffle_buffer=0, **kw), 8)
    assert shuf > 2 * flat, (flat, shuf)


def test_shuffle_keeps_curriculum_phases(
    real_snapshot: Path, tokenizer_dir: Path, tmp_path: Path
) -> None:
    from curriculum.build import build_curriculum

    cur = tmp_path / "cur"
    build_curriculum(real_snapshot, cur, "stable:0.8,anneal:0.2", seed=0)
    ld = ShardLoader(cur, tokenizer_dir, seq_len=32, batch_size=4, seed=0, shuffle_buffer=0)
    (a0, b0), (a1, b1) = ld.segments()
    assert a0 == 0 and b0 == a1 and b1 == ld.seqs_per_epoch
    start = ld.phase_token_starts()["anneal"]
    assert a1 == -(-start // 32)
    for p in range(ld.seqs_per_epoch):  # no sequence leaves its phase
        s = ld.sequence_at(0, p)
        assert (a0 <= s < b0) == (a0 <= p < b0)
