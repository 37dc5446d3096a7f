"""Export a checkpoint to the Hugging Face Llama format: config + safetensors + tokenizer.

Our module names already follow Llama's, so the export only adds the ``model.`` prefix and
writes ``config.json`` by hand (no ``transformers`` needed to export; the parity test loads the
folder with ``transformers.LlamaForCausalLM`` and compares logits). A sliding-window model
exports as ``MistralForCausalLM`` (same weights, plus ``sliding_window``). MoE models have no
Llama equivalent and are refused with a clear error.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from trainer_bridge.model import GPT
from trainer_bridge.tokenizer import EOS, TextTokenizer, write_hf_tokenizer_files


def hf_config(model: GPT, eos_id: int) -> dict:
    c = model.cfg
    arch, mtype = (
        ("MistralForCausalLM", "mistral") if c.sliding_window else ("LlamaForCausalLM", "llama")
    )
    cfg = {
        "architectures": [arch],
        "model_type": mtype,
        "vocab_size": c.vocab_size,
        "hidden_size": c.d_model,
        "intermediate_size": c.ffn_hidden,
        "num_hidden_layers": c.n_layer,
        "num_attention_heads": c.n_head,
        "num_key_value_heads": c.n_kv_head,
        "head_dim": c.head_dim,
        "max_position_embeddings": c.max_seq_len,
        "rms_norm_eps": c.norm_eps,
        "rope_theta": c.rope_theta,
        "rope_parameters": {"rope_type": "default", "rope_theta": c.rope_theta},
        "hidden_act": "silu",
        "attention_bias": False,
        "attention_dropout": 0.0,
        "mlp_bias": False,
        "tie_word_embeddings": c.tie_embeddings,
        "initializer_range": c.init_std,
        "bos_token_id": eos_id,
        "eos_token_id": eos_id,
        "torch_dtype": "float32",
        "use_cache": True,
    }
    if c.sliding_window:
        cfg["sliding_window"] = c.sliding_window
    return cfg


def export_hf(model: GPT, tokenizer: TextTokenizer, out: str | Path) -> Path:
    """Write ``config.json``, ``model.safetensors``, ``generation_config.json`` and tokenizer."""
    from safetensors.torch import save_file

    if model.cfg.n_experts:
        raise ValueError(
            "MoE models have no Llama equivalent; export a dense model "
            "(n_experts=0) or keep the assay checkpoint"
        )
    if any(not isinstance(p, torch.nn.Parameter) for p in [model.embed_tokens.weight]):
        raise ValueError("export a float model, not a quantized one (quantize after export)")
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    state = {}
    for k, v in model.state_dict().items():
        if k == "lm_head.weight":
            if model.cfg.tie_embeddings:
                continue
            state[k] = v
        else:
            state["model." + k] = v
    state = {k: v.detach().float().contiguous().cpu() for k, v in state.items()}
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    cfg = hf_config(model, tokenizer.eos_id)
    (folder / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    gen = {"bos_token_id": tokenizer.eos_id, "eos_token_id": tokenizer.eos_id}
    (folder / "generation_config.json").write_text(json.dumps(gen, indent=2) + "\n")
    shutil.copy(tokenizer.path, folder / "tokenizer.json")
    write_hf_tokenizer_files(folder)
    if tokenizer.tok.token_to_id(EOS) is None:  # a foreign tokenizer: keep its own config files
        for f in ("tokenizer_config.json", "special_tokens_map.json"):
            if (tokenizer.folder / f).exists():
                shutil.copy(tokenizer.folder / f, folder / f)
    return folder


def import_hf(folder: str | Path) -> GPT:
    """A local Hugging Face Llama/Mistral folder (config.json + safetensors) as our ``GPT``.

    The inverse of :func:`export_hf`: the architectures are the same, so only names change.
    Lets a real pretrained model (e.g. SmolLM2 from a local folder) be quantized, evaluated or
    used as a teacher with assay's own code.
    """
    from safetensors.torch import load_file

    from trainer_bridge.model import GPTConfig

    src = Path(folder)
    cfg = json.loads((src / "config.json").read_text())
    if cfg.get("model_type") not in ("llama", "mistral"):
        raise ValueError(f"{src}: model_type {cfg.get('model_type')!r}; only llama/mistral import")
    rope = cfg.get("rope_parameters") or {}
    theta = rope.get("rope_theta", cfg.get("rope_theta", 10000.0))
    if rope.get("rope_type", "default") not in ("default", None):
        raise ValueError(f"{src}: rope_type {rope.get('rope_type')!r} is not supported")
    heads = cfg["num_attention_heads"]
    gcfg = GPTConfig(
        vocab_size=cfg["vocab_size"],
        max_seq_len=min(int(cfg.get("max_position_embeddings", 2048)), 8192),
        n_layer=cfg["num_hidden_layers"],
        n_head=heads,
        n_kv_head=cfg.get("num_key_value_heads", heads),
        d_model=cfg["hidden_size"],
        ffn_hidden=cfg["intermediate_size"],
        rope_theta=float(theta),
        norm_eps=cfg.get("rms_norm_eps", 1e-5),
        tie_embeddings=bool(cfg.get("tie_word_embeddings", False)),
        sliding_window=cfg.get("sliding_window") if cfg.get("model_type") == "mistral" else None,
    )
    state: dict[str, torch.Tensor] = {}
    files = sorted(src.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{src}: no *.safetensors weights")
    for f in files:
        state.update(load_file(str(f)))
    ours = {k.removeprefix("model."): v.float() for k, v in state.items()}
    if gcfg.tie_embeddings:
        ours.pop("lm_head.weight", None)
        ours["lm_head.weight"] = ours["embed_tokens.weight"]
    model = GPT(gcfg)
    model.load_state_dict(ours, strict=True)
    return model.eval()


# -- GGUF ----------------------------------------------------------------------------------------
GGUF_TYPES = ("F32", "F16", "Q8_0", "Q4_0")


def _permute_for_gguf(w: torch.Tensor, n_head: int) -> torch.Tensor:
    """HF's rotate-half Q/K rows → GGML's interleaved RoPE layout (llama.cpp's own converter
    does the same; readers of llama GGUFs, transformers included, undo it)."""
    return (
        w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
        .swapaxes(1, 2)
        .reshape(w.shape)
    )


def _gguf_tokenizer(writer: object, tokenizer: TextTokenizer) -> None:
    tj = json.loads(tokenizer.path.read_text())
    model = tj["model"]
    if model.get("type") != "BPE":
        raise ValueError(f"{tokenizer.path}: GGUF export supports byte-level BPE tokenizers only")
    vocab = model["vocab"]
    special = {t["content"]: t["id"] for t in tj.get("added_tokens", [])}
    size = max([*vocab.values(), *special.values()]) + 1
    tokens = [""] * size
    for t, i in {**vocab, **special}.items():
        tokens[i] = t
    types = [3 if t in special else 1 for t in tokens]  # 3 = control, 1 = normal
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    pre = json.dumps(tj.get("pre_tokenizer"))
    writer.add_tokenizer_model("gpt2")  # type: ignore[attr-defined]
    # llama.cpp's names for the two pre-tokenizers we make: ByteLevel with GPT-2's regex
    # ("gpt-2"; llama.cpp refuses a file saying "gpt2") and SmolLM2's digit-splitting one
    writer.add_tokenizer_pre("smollm" if '"Digits"' in pre else "gpt-2")  # type: ignore[attr-defined]
    writer.add_token_list(tokens)  # type: ignore[attr-defined]
    writer.add_token_types(types)  # type: ignore[attr-defined]
    writer.add_token_merges(merges)  # type: ignore[attr-defined]
    writer.add_bos_token_id(tokenizer.eos_id)  # type: ignore[attr-defined]
    writer.add_eos_token_id(tokenizer.eos_id)  # type: ignore[attr-defined]
    writer.add_add_bos_token(False)  # type: ignore[attr-defined]


def export_gguf(model: GPT, tokenizer: TextTokenizer, out: str | Path, qtype: str = "F16") -> Path:
    """Write a llama-architecture GGUF file (weights + tokenizer) with the ``gguf`` package.

    ``qtype``: F32, F16, Q8_0 or Q4_0 for the 2-D weight matrices (the ``gguf`` package's
    reference quantizers, the same block formats llama.cpp reads); norms stay F32. Tensor
    names and metadata keys follow llama.cpp's ``convert_hf_to_gguf.py`` for Llama.
    """
    import gguf
    import numpy as np

    if qtype not in GGUF_TYPES:
        raise ValueError(f"qtype={qtype!r}: use one of {GGUF_TYPES}")
    if model.cfg.n_experts or model.cfg.sliding_window:
        raise ValueError("GGUF export covers dense full-attention models (Llama layout) only")
    if not isinstance(model.embed_tokens.weight, torch.nn.Parameter):
        raise ValueError("export a float model to GGUF (it quantizes itself with qtype)")
    c = model.cfg
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    w = gguf.GGUFWriter(str(tmp), "llama")
    w.add_name("assay-gpt")
    w.add_context_length(c.max_seq_len)
    w.add_embedding_length(c.d_model)
    w.add_block_count(c.n_layer)
    w.add_feed_forward_length(c.ffn_hidden)
    w.add_head_count(c.n_head)
    w.add_head_count_kv(c.n_kv_head)
    w.add_rope_freq_base(c.rope_theta)
    w.add_rope_dimension_count(c.head_dim)
    w.add_layer_norm_rms_eps(c.norm_eps)
    w.add_vocab_size(c.vocab_size)
    ftype = {"F32": 0, "F16": 1, "Q8_0": 7, "Q4_0": 2}[qtype]
    w.add_file_type(ftype)
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    _gguf_tokenizer(w, tokenizer)
    qt = getattr(gguf.GGMLQuantizationType, qtype)

    def put(name: str, t: torch.Tensor) -> None:
        a = t.detach().float().cpu().numpy()
        if a.ndim == 1 or qtype == "F32":
            w.add_tensor(name, np.ascontiguousarray(a, dtype=np.float32))
        elif qtype == "F16":
            w.add_tensor(name, a.astype(np.float16))
        else:
            w.add_tensor(name, gguf.quants.quantize(a, qt), raw_dtype=qt)

    put("token_embd.weight", model.embed_tokens.weight)
    for i, blk in enumerate(model.layers):
        at, mlp = blk.self_attn, blk.mlp
        put(f"blk.{i}.attn_norm.weight", blk.input_layernorm.weight)
        put(f"blk.{i}.attn_q.weight", _permute_for_gguf(at.q_proj.weight, c.n_head))
        put(f"blk.{i}.attn_k.weight", _permute_for_gguf(at.k_proj.weight, c.n_kv_head))
        put(f"blk.{i}.attn_v.weight", at.v_proj.weight)
        put(f"blk.{i}.attn_output.weight", at.o_proj.weight)
        put(f"blk.{i}.ffn_norm.weight", blk.post_attention_layernorm.weight)
        put(f"blk.{i}.ffn_gate.weight", mlp.gate_proj.weight)  # type: ignore[union-attr]
        put(f"blk.{i}.ffn_up.weight", mlp.up_proj.weight)  # type: ignore[union-attr]
        put(f"blk.{i}.ffn_down.weight", mlp.down_proj.weight)  # type: ignore[union-attr]
    put("output_norm.weight", model.norm.weight)
    if not c.tie_embeddings:
        put("output.weight", model.lm_head.weight)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    import os

    os.replace(tmp, path)
    return path


def read_gguf_summary(path: str | Path) -> dict:
    """What ``gguf``'s own reader sees in a file: architecture, tensor count, types, vocab."""
    import collections

    import gguf

    r = gguf.GGUFReader(str(path))
    arch = r.fields["general.architecture"]
    types = collections.Counter(t.tensor_type.name for t in r.tensors)
    return {
        "arch": bytes(arch.parts[arch.data[0]]).decode(),
        "tensors": len(r.tensors),
        "tensor_types": dict(types),
        "vocab": len(r.fields["tokenizer.ggml.tokens"].data),
    }
