"""int8/int4 weight-only quantization (real integer kernels, real file sizes), QAT, HF export."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from trainer_bridge.evaluation import build_eval_tensor, evaluate, read_texts
from trainer_bridge.quantize import (
    FakeQuantLinear,
    Int4Linear,
    Int8Linear,
    dequantize_int4,
    fp32_size,
    load_quantized,
    prepare_qat,
    quantize_checkpoint,
    quantize_int4,
    quantize_int8,
    quantize_model,
)
from trainer_bridge.tokenizer import TextTokenizer
from trainer_bridge.trainer import load_model

EVAL = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "pretrain_raw.jsonl.zst"


def test_int_kernels_match_dequantized_matmul() -> None:
    torch.manual_seed(0)
    w, x = torch.randn(96, 128), torch.randn(5, 128)
    q8, s8 = quantize_int8(w)
    assert (
        q8.dtype == torch.int8 and (q8.float() * s8[:, None] - w).abs().max() <= s8.max() / 2 + 1e-6
    )
    lin8 = Int8Linear.from_weight(w)
    ref8 = x @ (q8.float() * s8[:, None]).t()
    # the CPU kernels take bf16 activations: relative error ~2^-8 per input
    assert (lin8(x) - ref8).abs().max() < 0.02 * ref8.abs().max()
    q4, sz = quantize_int4(w, 32)
    assert int(q4.min()) >= 0 and int(q4.max()) <= 15
    deq = dequantize_int4(q4, sz, 32)
    assert (deq - w).abs().max() <= sz[..., 0].max() / 2 + 1e-5
    lin4 = Int4Linear.from_weight(w, 32)
    assert lin4.qweight.dtype == torch.uint8 and lin4.qweight.shape == (96, 64)
    ref4 = x @ deq.t()
    assert (lin4(x) - ref4).abs().max() < 0.02 * ref4.abs().max()  # aten int4 kernel vs reference


def test_quantized_model_sizes_and_perplexity(trained_run: Path, tmp_path: Path) -> None:
    model, ck = load_model(trained_run)
    tok = TextTokenizer(ck["tokenizer"])
    data = build_eval_tensor(read_texts(EVAL, max_chars=150_000), tok, 64, 16)
    base = evaluate(model, data)
    sizes = {}
    for method, max_rise in (("int8", 0.01), ("int4", 0.04)):
        r = quantize_checkpoint(
            trained_run, tmp_path / method, method, 32, str(EVAL), [], 16, measure_speed=False
        )
        sizes[method] = r["bytes"]
        assert r["ppl_increase"] <= max_rise, r
        q = load_quantized(tmp_path / method)
        linears = [m for m in q.modules() if isinstance(m, torch.nn.Linear)]
        assert not linears  # every matmul runs on integer weights
        assert abs(evaluate(q, data) - base) < 0.05
        assert q.generate(data[:1, :8], 4).shape == (1, 12)
    fp32 = fp32_size(model)
    assert sizes["int8"] < 0.35 * fp32 and sizes["int4"] < sizes["int8"]


def test_qat_fake_quant_matches_real_quantized_forward(trained_run: Path) -> None:
    model, _ = load_model(trained_run)
    qat = prepare_qat(copy.deepcopy(model), "int4")
    assert any(isinstance(m, FakeQuantLinear) for m in qat.modules())
    real = quantize_model(copy.deepcopy(model), "int4")
    ids = torch.randint(0, model.cfg.vocab_size, (2, 16))
    # identical except the head/embedding, which stay int8 in the real model
    diff = (qat(ids) - real(ids)).abs().max().item()
    assert diff < 0.05
    loss, _ = qat.loss(ids[:, :-1], ids[:, 1:])
    loss.backward()  # straight-through: gradients reach the fp32 weights
    assert qat.layers[0].mlp.up_proj.weight.grad is not None


def test_qat_training_then_quantize(
    real_snapshot: Path, tokenizer_dir: Path, trained_run: Path, tmp_path: Path
) -> None:
    from trainer_bridge.trainer import TrainConfig, train

    ck = torch.load(trained_run / "checkpoint.pt", weights_only=False)
    r = train(
        TrainConfig(
            snapshot=str(real_snapshot),
            out_dir=str(tmp_path / "qat"),
            tokenizer=str(tokenizer_dir),
            model={k: ck["model_config"][k] for k in ("n_layer", "n_head", "n_kv_head", "d_model")},
            seq_len=64,
            batch_size=8,
            max_steps=5,
            lr=3e-4,
            warmup_steps=1,
            log_every=0,
            quiet=True,
            init_from=str(trained_run),
            qat="int4",
        )
    )
    assert len(r["loss"]) == 5
    q = quantize_checkpoint(tmp_path / "qat", tmp_path / "q", "int4")
    assert q["bytes"] < q["fp32_bytes"]


def test_export_hf_llama_parity(trained_run: Path, tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    from trainer_bridge.export import export_hf

    model, ck = load_model(trained_run)
    tok = TextTokenizer(ck["tokenizer"])
    folder = export_hf(model, tok, tmp_path / "hf")
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["architectures"] == ["LlamaForCausalLM"] and cfg["num_key_value_heads"] == 2
    hf = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    hf_tok = transformers.AutoTokenizer.from_pretrained(folder)
    text = read_texts(EVAL, max_chars=2000)[0][:400]
    ids = hf_tok(text, return_tensors="pt")["input_ids"]
    assert ids[0].tolist() == tok.encode(text)
    ids = ids[:, :64]
    with torch.no_grad():
        ours, theirs = model(ids), hf(ids).logits
    assert torch.allclose(ours, theirs, atol=1e-4), (ours - theirs).abs().max()
    # and back: importing the HF folder gives our model with the same logits
    from trainer_bridge.export import import_hf

    back = import_hf(folder)
    assert back.cfg.to_dict() == model.cfg.to_dict()
    with torch.no_grad():
        assert torch.equal(back(ids), ours)


def test_cli_starts_without_torch() -> None:
    code = (
        "import sys, trainer_bridge.cli, curriculum.cli; "
        "assert 'torch' not in sys.modules, 'torch imported at CLI import'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])
