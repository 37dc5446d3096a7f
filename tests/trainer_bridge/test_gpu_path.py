"""The GPU path's pieces, run on the CPU: bf16 autocast, FP8 GEMMs, fused AdamW, torch.compile,
MFU. (No GPU was available to this project's tests; the same code runs there.)"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from trainer_bridge.trainer import TrainConfig, Trainer, mfu, peak_flops


def _cfg(snap: Path, tok: Path, out: Path, **kw: object) -> TrainConfig:
    base = dict(
        snapshot=str(snap),
        out_dir=str(out),
        tokenizer=str(tok),
        model=dict(n_layer=1, n_head=2, n_kv_head=1, d_model=32),
        seq_len=32,
        batch_size=4,
        max_steps=4,
        lr=1e-2,
        warmup_steps=1,
        log_every=0,
        quiet=True,
        device="cpu",
    )
    base.update(kw)
    return TrainConfig(**base)  # type: ignore[arg-type]


def test_fp8_linear_matches_reference_within_e4m3_error() -> None:
    from trainer_bridge.fp8 import FP8Linear, to_e4m3

    torch.manual_seed(0)
    lin = FP8Linear(64, 48, bias=False)
    x = torch.randn(3, 10, 64, requires_grad=True)
    y = lin(x)
    ref = x @ lin.weight.t()
    rel = (y - ref).abs().max() / ref.abs().max()
    assert 1e-4 < rel < 0.08, rel  # really quantized (not exact), within e4m3's ~2^-3 steps
    q, s = to_e4m3(x.detach())
    assert q.dtype == torch.float8_e4m3fn and float(q.float().abs().max()) == 448.0
    g = torch.randn_like(y)
    gx, gw = torch.autograd.grad(y, (x, lin.weight), g)
    rx, rw = torch.autograd.grad(ref, (x, lin.weight), g)
    assert torch.allclose(gx, rx, atol=1e-4) and torch.allclose(gw, rw, atol=1e-3)


def test_fp8_refused_on_old_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    from trainer_bridge import fp8
    from trainer_bridge.model import GPT, GPTConfig

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (8, 0))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "NVIDIA A100-SXM4-80GB")
    with pytest.raises(ValueError, match="capability 8.0; FP8 needs >= 8.9"):
        fp8.convert_to_fp8(GPT(GPTConfig(vocab_size=64, d_model=32, n_layer=1)), "cuda")


def test_bf16_and_fp8_training_on_cpu_track_fp32(
    real_snapshot: Path, tokenizer_dir: Path, tmp_path: Path
) -> None:
    runs = {
        p: Trainer(_cfg(real_snapshot, tokenizer_dir, tmp_path / p, precision=p))
        for p in ("fp32", "bf16", "fp8")
    }
    from trainer_bridge.fp8 import FP8Linear

    assert sum(isinstance(m, FP8Linear) for m in runs["fp8"].model.modules()) == 7
    hist = {p: t.run() for p, t in runs.items()}
    assert hist["bf16"]["precision"] == "bf16" and hist["fp32"]["precision"] == "fp32"
    first = hist["fp32"]["loss"][0]
    for p in ("bf16", "fp8"):
        assert hist[p]["loss"] != hist["fp32"]["loss"]  # really a different arithmetic
        assert abs(hist[p]["loss"][0] - first) < 0.05 * first
        assert hist[p]["loss"][-1] < hist[p]["loss"][0]


def test_fused_adamw_on_cpu_equals_unfused(
    real_snapshot: Path, tokenizer_dir: Path, tmp_path: Path
) -> None:
    a = Trainer(_cfg(real_snapshot, tokenizer_dir, tmp_path / "f", fused_adamw=True))
    b = Trainer(_cfg(real_snapshot, tokenizer_dir, tmp_path / "u", fused_adamw=False))
    assert a.opt.defaults["fused"] and not b.opt.defaults["fused"]
    la, lb = a.run()["loss"], b.run()["loss"]
    assert la == pytest.approx(lb, rel=1e-4)


def test_mfu_figures() -> None:
    assert peak_flops("NVIDIA H200") == 989e12 and peak_flops("Some CPU") is None
    # 100k tok/s on a model of 1e9 training FLOPs per token = 1e14 FLOP/s of 989e12
    assert mfu(1e5, 1e9, 989e12) == pytest.approx(0.1011, rel=1e-3)


@pytest.mark.slow
def test_torch_compile_on_cpu_gives_the_eager_losses(
    real_snapshot: Path, tokenizer_dir: Path, tmp_path: Path
) -> None:
    """The compiled model (inductor's C++ backend here, Triton on GPU) trains like eager."""
    pytest.importorskip("torch._inductor")
    c = Trainer(_cfg(real_snapshot, tokenizer_dir, tmp_path / "c", compile=True, max_steps=3))
    e = Trainer(_cfg(real_snapshot, tokenizer_dir, tmp_path / "e", compile=False, max_steps=3))
    rc, re_ = c.run(), e.run()
    assert rc["compiled"] and not re_["compiled"]
    assert rc["loss"] == pytest.approx(re_["loss"], rel=1e-3)
