"""Distillation losses and runs (assay and HF teachers); the curated-vs-raw ablation command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from trainer_bridge.ablation import tokens_to_reach, tokens_to_stay
from trainer_bridge.evaluation import build_eval_tensor, read_texts
from trainer_bridge.tokenizer import TextTokenizer
from trainer_bridge.trainer import Teacher, TrainConfig, kd_loss, load_model, train

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def test_kd_loss_properties() -> None:
    torch.manual_seed(0)
    s, t = torch.randn(3, 5, 11), torch.randn(3, 5, 11)
    assert kd_loss(t, t, 2.0, "forward").abs() < 1e-6
    fwd, rev = kd_loss(s, t, 1.0, "forward"), kd_loss(s, t, 1.0, "reverse")
    assert fwd > 0 and rev > 0 and not torch.isclose(fwd, rev)
    ps, pt = s.softmax(-1), t.softmax(-1)
    assert torch.isclose(fwd, (pt * (pt.log() - ps.log())).sum(-1).mean(), atol=1e-5)
    assert torch.isclose(rev, (ps * (ps.log() - pt.log())).sum(-1).mean(), atol=1e-5)
    w = torch.zeros(3, 5)
    w[0] = 1
    assert torch.isclose(kd_loss(s, t, 1.0, "forward", w), kd_loss(s[:1], t[:1], 1.0, "forward"))


def _student(
    snapshot: Path, tok: Path, out: Path, teacher: Path | None, kind: str = "forward"
) -> TrainConfig:
    return TrainConfig(
        snapshot=str(snapshot),
        out_dir=str(out),
        tokenizer=str(tok),
        model=dict(n_layer=1, n_head=2, n_kv_head=1, d_model=32),
        seq_len=64,
        batch_size=8,
        max_steps=20,
        lr=1e-2,
        warmup_steps=3,
        log_every=0,
        quiet=True,
        seed=1,
        teacher=str(teacher) if teacher else None,
        kd_alpha=1.0,
        kd_kind=kind,
    )


def test_distilled_student_is_closer_to_teacher(
    real_snapshot: Path, tokenizer_dir: Path, trained_run: Path, tmp_path: Path
) -> None:
    train(_student(real_snapshot, tokenizer_dir, tmp_path / "kd", trained_run))
    train(_student(real_snapshot, tokenizer_dir, tmp_path / "scratch", None))
    teacher = Teacher(str(trained_run), TextTokenizer(tokenizer_dir).vocab_size, "cpu")
    data = build_eval_tensor(
        read_texts(DATA / "pretrain_raw.jsonl.zst", max_chars=100_000),
        TextTokenizer(tokenizer_dir),
        64,
        8,
    )
    ids = data[:, :-1]
    t_logits = teacher(ids)
    kls = {}
    for name in ("kd", "scratch"):
        m, _ = load_model(tmp_path / name)
        with torch.no_grad():
            kls[name] = float(kd_loss(m(ids), t_logits, 1.0, "forward"))
    assert kls["kd"] < kls["scratch"], kls


def test_hf_teacher_matches_assay_teacher(trained_run: Path, tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    from trainer_bridge.export import export_hf

    model, ck = load_model(trained_run)
    tok = TextTokenizer(ck["tokenizer"])
    export_hf(model, tok, tmp_path / "hf")
    ids = torch.randint(0, tok.vocab_size, (2, 32))
    a = Teacher(str(trained_run), tok.vocab_size, "cpu")(ids)
    b = Teacher(str(tmp_path / "hf"), tok.vocab_size, "cpu")(ids)
    assert b.shape == a.shape and torch.allclose(a, b, atol=1e-4)


def test_tokens_to_reach_interpolates() -> None:
    assert tokens_to_reach([100, 200, 300], [5.0, 4.0, 3.0], 3.5) == pytest.approx(250.0)
    assert tokens_to_reach([100, 200], [5.0, 4.0], 3.0) is None
    assert tokens_to_reach([100, 200], [2.0, 1.0], 3.0) == pytest.approx(100.0)
    noisy = ([100, 200, 300, 400], [5.0, 3.0, 4.0, 3.2])
    assert tokens_to_reach(*noisy, 3.5) == pytest.approx(175.0)  # first crossing
    assert tokens_to_stay(*noisy, 3.5) == pytest.approx(362.5)  # after the rebound at 300
    assert tokens_to_stay([100, 200, 300], [5.0, 3.0, 4.0], 3.5) is None
    assert tokens_to_stay([100, 200, 300], [5.0, 3.0, 2.0], 3.5) == pytest.approx(175.0)


def test_ablation_command_on_small_inputs(
    real_snapshot: Path, tokenizer_dir: Path, tmp_path: Path
) -> None:
    from curriculum.build import build_curriculum
    from trainer_bridge.cli import eval_group

    curated = tmp_path / "curated"
    build_curriculum(real_snapshot, curated, phases="stable:0.8,anneal:0.2")
    r = CliRunner().invoke(
        eval_group,
        [
            "ablation",
            str(real_snapshot),
            str(curated),
            "--out",
            str(tmp_path / "abl"),
            "--eval",
            str(DATA / "quality_train.jsonl.zst"),
            "--eval-where",
            "label=1",
            "--eval-seqs",
            "8",
            "--tokens",
            "20000",
            "--evals",
            "4",
            "--tokenizer",
            str(tokenizer_dir),
            "--layers",
            "1",
            "--d-model",
            "32",
            "--heads",
            "2",
            "--kv-heads",
            "1",
            "--seq-len",
            "32",
            "--batch-size",
            "8",
            "--device",
            "cpu",
        ],
    )
    assert r.exit_code == 0, r.output
    res = json.loads((tmp_path / "abl" / "result.json").read_text())
    assert res["tokens_budget"] == 78 * 256
    for run in ("raw", "curated"):
        assert len(res["runs"][run]["eval_loss"]) == 4
        assert res["runs"][run]["eval_tokens"][-1] == res["tokens_budget"]
    assert res["raw_final_loss"] == res["runs"]["raw"]["eval_loss"][-1]
    if res["tokens_to_raw_final"] is not None:
        assert 0 < res["token_ratio"] <= 1
    png = (tmp_path / "abl" / "ablation.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_topk_kd_loss_properties() -> None:
    from trainer_bridge.trainer import kd_loss_topk

    torch.manual_seed(1)
    s, t = torch.randn(2, 4, 13), torch.randn(2, 4, 13)
    # k = whole vocabulary: exactly the full forward KL
    tv, ti = t.topk(13, -1)
    assert torch.isclose(kd_loss_topk(s, tv, ti, 2.0), kd_loss(s, t, 2.0, "forward"), atol=1e-5)
    tv, ti = t.topk(3, -1)
    assert kd_loss_topk(s, tv, ti, 1.0) > 0
    # a student that puts the renormalised top-k distribution on those tokens scores 0
    ideal = torch.full_like(s, -1e4).scatter(-1, ti, tv)
    assert kd_loss_topk(ideal, tv, ti, 1.0).abs() < 1e-5


def test_teacher_cache_is_reused_across_seeds(
    real_snapshot: Path, tokenizer_dir: Path, trained_run: Path, tmp_path: Path
) -> None:
    """The first KD run fills the top-k cache; a run with another model seed but the same
    data seed needs no teacher at all; a different batch with no teacher is a clear error."""
    from trainer_bridge.trainer import Trainer

    cache = tmp_path / "cache"

    def cfg(seed: int, teacher: Path | None, data_seed: int = 0) -> TrainConfig:
        c = _student(real_snapshot, tokenizer_dir, tmp_path / f"s{seed}_{data_seed}", teacher)
        c.max_steps, c.seed, c.data_seed = 4, seed, data_seed
        c.kd_top_k, c.teacher_cache, c.kd_alpha = 8, str(cache), 0.5
        return c

    first = Trainer(cfg(0, trained_run))
    first.run()
    assert first.teacher_topk is not None
    assert (first.teacher_topk.misses, first.teacher_topk.hits) == (4, 0)
    assert len(list(cache.glob("*.pt"))) == 4
    second = Trainer(cfg(1, None))
    r = second.run()
    assert second.teacher_topk is not None
    assert (second.teacher_topk.misses, second.teacher_topk.hits) == (0, 4)
    assert len(r["loss"]) == 4
    with pytest.raises(FileNotFoundError, match="not in the teacher cache"):
        Trainer(cfg(1, None, data_seed=7)).run()
    with pytest.raises(ValueError, match="kd_top_k"):
        TrainConfig(snapshot="x", out_dir="y", teacher_cache="z")
