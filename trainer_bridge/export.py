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
