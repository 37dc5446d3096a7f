"""ShardLoader: exact resume, worker-count-independent order, no duplicates, weights carried."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from trainer_bridge.loader import ShardLoader
from trainer_bridge.tokenizer import TextTokenizer


def _loader(snapshot: Path, tok: Path, **kw: object) -> ShardLoader:
    args = {"seq_len": 32, "batch_size": 4, "seed": 7}
    args.update(kw)
    return ShardLoader(snapshot, tok, **args)  # type: ignore[arg-type]


def _same(a: dict, b: dict) -> bool:
    return all(torch.equal(a[k], b[k]) for k in ("input_ids", "labels", "weights"))


def test_tokenizer_round_trips_real_text(real_snapshot: Path, tokenizer_dir: Path) -> None:
    from curriculum.snapshot_io import read_snapshot

    tok = TextTokenizer(tokenizer_dir)
    texts = read_snapshot(real_snapshot, ["text"]).column("text").to_pylist()[:50]
    for t in texts:
        assert tok.decode(tok.encode(t)) == t
    n_chars = sum(len(t) for t in texts)
    n_tok = sum(len(ids) for ids in tok.encode_batch(texts))
    assert n_tok < 0.75 * n_chars  # even 512 merges compress real text (~1.6 chars/token)
    assert tok.decode([tok.eos_id]) == ""  # EOS is a special token, skipped when decoding


def test_exact_resume(real_snapshot: Path, tokenizer_dir: Path) -> None:
    a = _loader(real_snapshot, tokenizer_dir)
    it = iter(a)
    for _ in range(5):
        next(it)
    state = a.state_dict()
    expected = [next(it) for _ in range(3)]
    b = _loader(real_snapshot, tokenizer_dir)
    b.load_state_dict(state)
    got = [x for _, x in zip(range(3), b)]
    assert [g["batch_index"] for g in got] == [5, 6, 7]
    assert all(_same(e, g) for e, g in zip(expected, got))
    assert not _same(expected[0], expected[1])


def test_resume_across_epoch_boundary(real_snapshot: Path, tokenizer_dir: Path) -> None:
    a = _loader(real_snapshot, tokenizer_dir, seq_len=64, batch_size=16)
    last = a.batches_per_epoch - 1
    a.load_state_dict({**a.state_dict(), "next_batch": last})
    x = [b for _, b in zip(range(2), a)]
    assert [b["epoch"] for b in x] == [0, 1]
    # epoch 1 is a different permutation of the same documents
    assert not np.array_equal(a.doc_order(0), a.doc_order(1))
    assert sorted(a.doc_order(0)) == sorted(a.doc_order(1))


@pytest.mark.filterwarnings("ignore:This DataLoader will create")
def test_order_independent_of_workers_and_no_duplicates(
    real_snapshot: Path, tokenizer_dir: Path
) -> None:
    n = 10
    single = list(_loader(real_snapshot, tokenizer_dir, max_batches=n).dataloader(0))
    multi = list(_loader(real_snapshot, tokenizer_dir, max_batches=n).dataloader(2))
    three = list(_loader(real_snapshot, tokenizer_dir, max_batches=n).dataloader(3))
    assert [b["batch_index"] for b in multi] == list(range(n))
    assert [b["batch_index"] for b in three] == list(range(n))
    assert all(_same(x, y) and _same(x, z) for x, y, z in zip(single, multi, three))
    # packed sequences tile the stream: each batch's last label is the next batch's first input
    rows = torch.cat([b["input_ids"] for b in multi])
    labels = torch.cat([b["labels"] for b in multi])
    assert torch.equal(rows[1:, 0], labels[:-1, -1])
    assert torch.equal(rows[:, 1:], labels[:, :-1])


def test_resume_with_workers(real_snapshot: Path, tokenizer_dir: Path) -> None:
    ds = _loader(real_snapshot, tokenizer_dir, max_batches=12)
    dl = ds.dataloader(2)
    it = iter(dl)
    for _ in range(5):
        next(it)
    state = dl.state_dict()
    rest = list(it)
    ds2 = _loader(real_snapshot, tokenizer_dir, max_batches=12)
    ds2.load_state_dict(state)
    again = list(ds2.dataloader(0))
    assert state["next_batch"] == 5
    assert [b["batch_index"] for b in again] == list(range(5, 12))
    assert all(_same(x, y) for x, y in zip(rest, again))


def test_weights_follow_documents(real_snapshot: Path, tokenizer_dir: Path) -> None:
    ds = _loader(real_snapshot, tokenizer_dir, seq_len=64, batch_size=8)
    c = ds.cache
    order = ds.doc_order(0)
    lengths = np.diff(c.offsets)[order]
    per_token = np.repeat(c.weights[order], lengths)  # weight of every stream position
    tokens = np.concatenate([c.tokens[c.offsets[d] : c.offsets[d + 1]] for d in order])
    for g in (0, 3, ds.batches_per_epoch - 1):
        b = ds.batch(g)
        for i in range(ds.batch_size):
            s = (g * ds.batch_size + i) * ds.seq_len
            assert np.array_equal(b["input_ids"][i].numpy(), tokens[s : s + ds.seq_len])
            assert np.array_equal(b["weights"][i].numpy(), per_token[s + 1 : s + 1 + ds.seq_len])
    assert set(np.unique(c.weights).tolist()) == {0.5, 1.0}


def test_state_mismatch_is_a_clear_error(real_snapshot: Path, tokenizer_dir: Path) -> None:
    a = _loader(real_snapshot, tokenizer_dir)
    b = _loader(real_snapshot, tokenizer_dir, seq_len=16)
    with pytest.raises(ValueError, match="seq_len"):
        b.load_state_dict(a.state_dict())
