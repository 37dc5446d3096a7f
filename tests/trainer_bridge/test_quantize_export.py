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


def test_gptq_with_identity_hessian_is_rtn_and_beats_rtn_on_real_activations(
    trained_run: Path,
) -> None:
    from trainer_bridge.quantize import gptq_int4

    model, ck = load_model(trained_run)
    w = model.layers[0].mlp.up_proj.weight.detach()
    q_rtn, sz_rtn = quantize_int4(w, 32)
    q, sz = gptq_int4(w, torch.eye(w.shape[1]), 32)
    assert torch.equal(q, q_rtn) and torch.allclose(sz, sz_rtn)  # no correlations: no updates
    # real activations of that layer: calibrate on one half of the text, measure on the other
    tok = TextTokenizer(ck["tokenizer"])
    data = build_eval_tensor(read_texts(EVAL, max_chars=200_000), tok, 64, 32)
    acts: list[torch.Tensor] = []
    h = model.layers[0].mlp.up_proj.register_forward_hook(lambda m, i, o: acts.append(i[0]))
    with torch.no_grad():
        model(data[:, :-1])
    h.remove()
    x = acts[0].reshape(-1, w.shape[1])
    calib, held = x[: len(x) // 2], x[len(x) // 2 :]
    q, sz = gptq_int4(w, (calib.t() @ calib).double(), 32)
    err_gptq = (held @ (w - dequantize_int4(q, sz, 32)).t()).norm()
    err_rtn = (held @ (w - dequantize_int4(q_rtn, sz_rtn, 32)).t()).norm()
    assert err_gptq < 0.9 * err_rtn, (float(err_gptq), float(err_rtn))


def test_gptq_model_loads_back_and_is_no_worse_than_rtn(trained_run: Path, tmp_path: Path) -> None:
    from trainer_bridge.quantize import quantize_model_gptq, save_quantized

    model, ck = load_model(trained_run)
    tok = TextTokenizer(ck["tokenizer"])
    texts = read_texts(EVAL, max_chars=400_000)
    calib = build_eval_tensor(texts[: len(texts) // 2], tok, 64, 32)
    held = build_eval_tensor(texts[len(texts) // 2 :], tok, 64, 16)
    base = evaluate(model, held)
    rtn = evaluate(quantize_model(copy.deepcopy(model), "int4"), held)
    g = quantize_model_gptq(copy.deepcopy(model), calib[:, :-1])
    save_quantized(g, tmp_path / "g", "int4", 32, tok.folder)
    assert json.loads((tmp_path / "g" / "quant_config.json").read_text())["algorithm"] == "gptq"
    back = load_quantized(tmp_path / "g")
    gptq = evaluate(back, held)
    assert abs(gptq - evaluate(g, held)) < 1e-6
    print(base, rtn, gptq)
    assert gptq - base <= rtn - base + 1e-3, (base, rtn, gptq)


def test_gguf_export_reads_back_in_gguf_and_transformers(trained_run: Path, tmp_path: Path) -> None:
    """F32 GGUF → transformers' own GGUF loader gives our logits; Q8_0/Q4_0 are smaller, and
    gguf's reader dequantizes them back to the weights within the block format's error."""
    gguf = pytest.importorskip("gguf")
    transformers = pytest.importorskip("transformers")
    from trainer_bridge.export import _permute_for_gguf, export_gguf, read_gguf_summary

    model, ck = load_model(trained_run)
    tok = TextTokenizer(ck["tokenizer"])
    paths = {
        q: export_gguf(model, tok, tmp_path / f"m-{q}.gguf", q) for q in ("F32", "Q8_0", "Q4_0")
    }
    sizes = {q: p.stat().st_size for q, p in paths.items()}
    assert sizes["Q4_0"] < sizes["Q8_0"] < 0.4 * sizes["F32"]
    summ = read_gguf_summary(paths["Q8_0"])
    assert summ["arch"] == "llama" and summ["vocab"] == tok.vocab_size
    assert summ["tensors"] == 2 + 9 * model.cfg.n_layer and summ["tensor_types"]["Q8_0"] > 0
    r = gguf.GGUFReader(str(paths["Q8_0"]))
    t = next(t for t in r.tensors if t.name == "blk.0.attn_q.weight")
    deq = torch.from_numpy(gguf.quants.dequantize(t.data, t.tensor_type).copy()).view(
        *model.layers[0].self_attn.q_proj.weight.shape
    )
    ref = _permute_for_gguf(model.layers[0].self_attn.q_proj.weight.detach(), model.cfg.n_head)
    assert (deq - ref).abs().max() < 0.01 * ref.abs().max()
    ids = torch.tensor([tok.encode(read_texts(EVAL, max_chars=2000)[0])[:48]])
    with torch.no_grad():
        ours = model(ids)
        for q, atol in (("F32", 1e-4), ("Q8_0", None)):
            hf = transformers.AutoModelForCausalLM.from_pretrained(
                str(tmp_path), gguf_file=paths[q].name, dtype=torch.float32
            ).eval()
            theirs = hf(ids).logits
            if atol:
                assert torch.allclose(ours, theirs, atol=atol), (ours - theirs).abs().max()
            else:  # 8-bit blocks: the same predictions, nearly
                assert (ours.argmax(-1) == theirs.argmax(-1)).float().mean() > 0.9


def test_cli_gptq_quantize_and_gguf_export(trained_run: Path, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from trainer_bridge.cli import train

    q = CliRunner().invoke(
        train,
        [
            "quantize",
            str(trained_run),
            str(tmp_path / "q"),
            "--method",
            "int4",
            "--gptq",
            str(EVAL),
            "--eval",
            str(EVAL),
            "--eval-seqs",
            "8",
        ],
    )
    assert q.exit_code == 0, q.output
    rep = json.loads(q.output)
    assert rep["algorithm"] == "gptq" and rep["ppl_increase"] < 0.05
    bad = CliRunner().invoke(
        train, ["quantize", str(trained_run), str(tmp_path / "x"), "--gptq", str(EVAL)]
    )
    assert bad.exit_code != 0 and "--gptq applies to --method int4" in bad.output
    e = CliRunner().invoke(
        train, ["export", str(trained_run), str(tmp_path / "hf"), "--gguf", "Q8_0"]
    )
    assert e.exit_code == 0, e.output
    assert (tmp_path / "hf" / "model-Q8_0.gguf").stat().st_size > 0
    assert (tmp_path / "hf" / "config.json").exists()


def _llama_cpp_complete(path: Path, prompt: object, n: int, top: int) -> dict:
    """Greedy completion of ``prompt`` by llama.cpp itself (the ``xllamacpp`` wheel's embedded
    llama.cpp server, in process): generated ids and each step's top-``top`` log-probs."""
    import xllamacpp as xlc

    params = xlc.CommonParams()
    params.model.path = str(path)
    params.n_ctx = 128
    params.cpuparams.n_threads = 1
    params.verbosity = -1
    server = xlc.Server(params)
    r = server.handle_completions({"prompt": prompt, "n_predict": n, "temperature": 0.0,
                                   "top_k": 1, "n_probs": top, "cache_prompt": False})
    steps = r["choices"][0]["logprobs"]["content"]
    return {
        "ids": [s["id"] for s in steps],
        "top": [{t["id"]: t["logprob"] for t in s["top_logprobs"]} for s in steps],
        "prompt_tokens": r["usage"]["prompt_tokens"],
    }


def test_gguf_export_runs_in_llama_cpp(trained_run: Path, tmp_path: Path) -> None:
    """llama.cpp itself loads our GGUF export, tokenizes like us and generates our greedy
    tokens with our log-probs (F32: within 1e-3; Q8_0: close, same greedy tokens)."""
    pytest.importorskip("xllamacpp")
    from trainer_bridge.export import export_gguf

    model, ck = load_model(trained_run)
    tok = TextTokenizer(ck["tokenizer"])
    text = read_texts(EVAL, max_chars=20_000)[1][:300]
    ids = tok.encode(text)[:48]
    n_new = 16
    with torch.no_grad():  # our greedy tokens and the log-softmax at each generated position
        full = model.generate(torch.tensor([ids]), n_new)
        logp = model(full[:, :-1])[0, len(ids) - 1 :].log_softmax(-1)
    ours = full[0, len(ids) :].tolist()
    for qtype, atol in (("F32", 1e-3), ("Q8_0", 0.05)):
        path = export_gguf(model, tok, tmp_path / f"m-{qtype}.gguf", qtype)
        got = _llama_cpp_complete(path, ids, n_new, 5)
        assert got["ids"] == ours, (qtype, got["ids"], ours)
        for k, top in enumerate(got["top"]):
            want = torch.tensor([float(logp[k, t]) for t in top])
            assert torch.allclose(torch.tensor(list(top.values())), want, atol=atol), (qtype, k)
    # the same text as a string: llama.cpp's tokenizer (from the GGUF) gives our ids
    prefix = tok.decode(ids)
    by_text = _llama_cpp_complete(tmp_path / "m-F32.gguf", prefix, 4, 1)
    assert by_text["prompt_tokens"] == len(tok.encode(prefix))
    assert by_text["ids"] == ours[:4]
