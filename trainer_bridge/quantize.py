"""Weight-only post-training quantization (int8, int4) and quantization-aware training.

The quantized model really runs on integer weights and its file really is smaller:

- **int8**: symmetric, one fp32 scale per output channel. On CPU the matmul is
  ``torch.ops.aten._weight_int8pack_mm`` (int8 weights, bf16 activations: its fp32 path is ~20x
  slower in torch 2.13); elsewhere the weight is dequantized on the fly.
- **int4**: asymmetric, one (scale, zero) pair per group of ``group_size`` input channels,
  ``w ≈ (q - 8) · scale + zero`` with ``q`` in 0..15, stored two nibbles per byte. On CPU the
  matmul is ``torch.ops.aten._weight_int4pack_mm_for_cpu`` with bf16 activations (the weights
  are repacked into its layout once, at first use); elsewhere, dequantize on the fly.
- Embedding and LM head (tied or not) stay at int8 in both modes: the head's errors hit every
  logit, and int8 costs ~0.1% perplexity there versus several % at int4.

On disk: ``model.safetensors`` (int8/uint8 tensors + fp32 scales and norms) and
``quant_config.json``. QAT (``prepare_qat``) trains with fake-quantized weights (straight-through
estimator), so the weights learn to sit where the rounding puts them.

Two ways to choose the int4 codes, same format and kernels:

- **RTN** (round to nearest): each group's min/max grid, every weight rounded on its own.
- **GPTQ** (Frantar et al. 2022, activation-aware): calibrated on real text, block by block —
  each transformer block's linears see the activations of the already-quantized blocks before
  them; within a linear, columns are quantized left to right and each rounding error is spread
  onto the not-yet-quantized columns through the inverse Hessian ``H = XᵀX`` of the layer's
  inputs, minimising ``‖XWᵀ - XŴᵀ‖`` rather than ``‖W - Ŵ‖``. Group scales are set from the
  (updated) weights when a group starts (GPTQ's ``groupsize`` without ``static_groups``), 1%
  dampening, no activation reordering.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from trainer_bridge.model import GPT, GPTConfig

METHODS = ("int8", "int4")


# -- quantizers --------------------------------------------------------------------------------
def quantize_int8(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row symmetric int8: (q int8 [n, k], scale fp32 [n]); w ≈ q · scale."""
    scale = w.abs().amax(dim=1).clamp_min(1e-8) / 127.0
    q = torch.clamp(torch.round(w / scale[:, None]), -127, 127).to(torch.int8)
    return q, scale.float()


def quantize_int4(w: torch.Tensor, group_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-group asymmetric int4: (q int32 [n, k] in 0..15, scales_zeros fp32 [k/g, n, 2])."""
    n, k = w.shape
    if k % group_size:
        raise ValueError(f"in_features={k} is not a multiple of group_size={group_size}")
    g = w.float().view(n, k // group_size, group_size)
    hi, lo = g.amax(-1, keepdim=True), g.amin(-1, keepdim=True)
    scale = (hi - lo).clamp_min(1e-8) / 15.0
    zero = lo + 8 * scale
    q = torch.clamp(torch.round((g - lo) / scale), 0, 15).to(torch.int32).view(n, k)
    sz = torch.stack([scale.squeeze(-1), zero.squeeze(-1)], dim=-1)  # [n, k/g, 2]
    return q, sz.transpose(0, 1).contiguous()


def dequantize_int4(q: torch.Tensor, sz: torch.Tensor, group_size: int) -> torch.Tensor:
    n, k = q.shape
    scale = sz[..., 0].t().unsqueeze(-1)  # [n, k/g, 1]
    zero = sz[..., 1].t().unsqueeze(-1)
    return ((q.view(n, k // group_size, group_size).float() - 8) * scale + zero).view(n, k)


def pack_nibbles(q: torch.Tensor) -> torch.Tensor:
    """[n, k] values 0..15 → [n, k/2] uint8 (even column in the low nibble)."""
    q = q.to(torch.uint8)
    return q[:, 0::2] | (q[:, 1::2] << 4)


def unpack_nibbles(p: torch.Tensor) -> torch.Tensor:
    lo, hi = p & 0x0F, p >> 4
    return torch.stack([lo, hi], dim=-1).view(p.shape[0], -1).to(torch.int32)


# -- modules -----------------------------------------------------------------------------------
class Int8Linear(nn.Module):
    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.register_buffer("qweight", torch.zeros(out_features, in_features, dtype=torch.int8))
        self.register_buffer("scales", torch.ones(out_features))
        self._scale_cache: torch.Tensor | None = None

    def _scales_bf16(self) -> torch.Tensor:
        if self._scale_cache is None or self._scale_cache.shape != self.scales.shape:
            self._scale_cache = self.scales.to(torch.bfloat16)
        return self._scale_cache

    @classmethod
    def from_weight(cls, w: torch.Tensor) -> Int8Linear:
        m = cls(w.shape[1], w.shape[0])
        m.qweight, m.scales = quantize_int8(w.detach().float())
        return m

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x2 = x.reshape(-1, self.in_features)
        if x2.device.type == "cpu":  # bf16 activations: the kernel's fast path (fp32 is ~20x
            # slower in torch 2.13); the int8 weights and fp32 accumulation are unchanged
            y = torch.ops.aten._weight_int8pack_mm(
                x2.to(torch.bfloat16).contiguous(), self.qweight, self._scales_bf16()
            ).to(x2.dtype)
        else:
            w = self.qweight.to(x2.dtype) * self.scales[:, None].to(x2.dtype)
            y = x2 @ w.t()
        return y.view(*shape[:-1], self.out_features)


class Int4Linear(nn.Module):
    def __init__(self, in_features: int, out_features: int, group_size: int) -> None:
        super().__init__()
        self.in_features, self.out_features, self.group_size = in_features, out_features, group_size
        self.register_buffer(
            "qweight", torch.zeros(out_features, in_features // 2, dtype=torch.uint8)
        )
        self.register_buffer(
            "scales_zeros", torch.zeros(in_features // group_size, out_features, 2)
        )
        self._cpu_packed: torch.Tensor | None = None
        self._sz_cache: torch.Tensor | None = None

    @classmethod
    def from_weight(cls, w: torch.Tensor, group_size: int) -> Int4Linear:
        m = cls(w.shape[1], w.shape[0], group_size)
        q, m.scales_zeros = quantize_int4(w.detach(), group_size)
        m.qweight = pack_nibbles(q)
        return m

    def _sz_bf16(self) -> torch.Tensor:
        if self._sz_cache is None or self._sz_cache.shape != self.scales_zeros.shape:
            self._sz_cache = self.scales_zeros.to(torch.bfloat16)
        return self._sz_cache

    def _packed(self) -> torch.Tensor:
        if self._cpu_packed is None:
            self._cpu_packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(
                unpack_nibbles(self.qweight).contiguous(), 1
            )
        return self._cpu_packed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x2 = x.reshape(-1, self.in_features)
        if x2.device.type == "cpu":  # bf16 activations: the kernel's fast path, as for int8
            y = torch.ops.aten._weight_int4pack_mm_for_cpu(
                x2.to(torch.bfloat16).contiguous(),
                self._packed(),
                self.group_size,
                self._sz_bf16(),
            ).to(x2.dtype)
        else:
            w = dequantize_int4(unpack_nibbles(self.qweight), self.scales_zeros, self.group_size)
            y = x2 @ w.to(x2.dtype).t()
        return y.view(*shape[:-1], self.out_features)


class Int8Embedding(nn.Module):
    """Row-wise int8 embedding; with a tied int8 head it reads the head's tensors (stored once)."""

    def __init__(self, num: int, dim: int, shared: Int8Linear | None = None) -> None:
        super().__init__()
        self.shared = [shared]  # a list keeps it out of the module tree and the state dict
        if shared is None:
            self.register_buffer("qweight", torch.zeros(num, dim, dtype=torch.int8))
            self.register_buffer("scales", torch.ones(num))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        src = self.shared[0] if self.shared[0] is not None else self
        return F.embedding(ids, src.qweight).float() * src.scales[ids].unsqueeze(-1)


# -- whole-model conversion --------------------------------------------------------------------
def _block_linears(model: GPT) -> list[tuple[nn.Module, str, nn.Linear]]:
    out = []
    for block in model.layers:
        for parent in block.modules():
            for name, child in parent.named_children():
                if isinstance(child, nn.Linear) and name != "router":
                    out.append((parent, name, child))
    return out


def _int4_group_params(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(lo, scale, zero) per row of ``w`` [n, g]: the RTN grid of :func:`quantize_int4`."""
    hi, lo = w.amax(-1), w.amin(-1)
    scale = (hi - lo).clamp_min(1e-8) / 15.0
    return lo, scale, lo + 8 * scale


def gptq_int4(
    w: torch.Tensor, h: torch.Tensor, group_size: int, damp: float = 0.01, block: int = 128
) -> tuple[torch.Tensor, torch.Tensor]:
    """GPTQ codes for ``w`` [n, k] given the input Hessian ``h`` [k, k] (``sum x xᵀ``): the
    same (q, scales_zeros) layout as :func:`quantize_int4`."""
    w = w.detach().float().clone()
    n, k = w.shape
    if k % group_size or block % group_size:
        raise ValueError(f"in_features={k} / block={block} not multiples of group={group_size}")
    h = h.double().clone()
    dead = torch.diag(h) == 0
    h[dead, dead] = 1.0
    w[:, dead] = 0.0
    h += damp * torch.diag(h).mean() * torch.eye(k, dtype=h.dtype)
    hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True)
    hinv = hinv.float()
    q_all = torch.zeros(n, k, dtype=torch.int32)
    sz = torch.zeros(k // group_size, n, 2)
    for i1 in range(0, k, block):
        i2 = min(i1 + block, k)
        w1 = w[:, i1:i2].clone()
        err1 = torch.zeros_like(w1)
        h1 = hinv[i1:i2, i1:i2]
        lo = scale = zero = None
        for i in range(i2 - i1):
            col = i1 + i
            if col % group_size == 0:
                lo, scale, zero = _int4_group_params(w1[:, i : i + group_size])
                sz[col // group_size, :, 0], sz[col // group_size, :, 1] = scale, zero
            assert lo is not None and scale is not None and zero is not None
            x = w1[:, i]
            q = torch.clamp(torch.round((x - lo) / scale), 0, 15)
            deq = (q - 8) * scale + zero
            q_all[:, col] = q.to(torch.int32)
            e = (x - deq) / h1[i, i]
            w1[:, i:] -= e[:, None] * h1[i, i:][None, :]
            err1[:, i] = e
        w[:, i2:] -= err1 @ hinv[i1:i2, i2:]
    return q_all, sz


def _quantize_head_and_embedding(model: GPT) -> None:
    tied = model.cfg.tie_embeddings
    emb = model.embed_tokens.weight.detach()
    head = Int8Linear.from_weight(emb if tied else model.lm_head.weight.detach())
    model.lm_head = head  # type: ignore[assignment]
    if tied:
        model.embed_tokens = Int8Embedding(*emb.shape, shared=head)  # type: ignore[assignment]
    else:
        e = Int8Embedding(*emb.shape)
        e.qweight, e.scales = quantize_int8(emb)
        model.embed_tokens = e  # type: ignore[assignment]


@torch.no_grad()
def quantize_model_gptq(
    model: GPT, calib: torch.Tensor, group_size: int = 32, damp: float = 0.01, batch: int = 8
) -> GPT:
    """int4 GPTQ of every block linear (in place), calibrated on token rows ``calib`` [N, T];
    head and embedding int8 as in :func:`quantize_model`. Block-sequential: block ``i`` is
    calibrated on the outputs of the already-quantized blocks ``< i``."""
    model = model.float().cpu().eval()
    T = calib.shape[1]
    cos, sin = model.rope_cos[:T], model.rope_sin[:T]
    xs = [model.embed_tokens(calib[i : i + batch]) for i in range(0, len(calib), batch)]
    for block in model.layers:
        linears = [(p, n, c) for p, n, c in _block_linears_of(block)]
        hess = {
            id(c): torch.zeros(c.in_features, c.in_features, dtype=torch.float64)
            for _, _, c in linears
        }

        def hook(mod: nn.Module, inp: tuple[torch.Tensor, ...], _out: torch.Tensor) -> None:
            x = inp[0].reshape(-1, inp[0].shape[-1]).double()
            hess[id(mod)] += x.t() @ x

        handles = [c.register_forward_hook(hook) for _, _, c in linears]
        for x in xs:
            block(x, cos, sin)
        for hd in handles:
            hd.remove()
        for parent, name, lin in linears:
            q, sz = gptq_int4(lin.weight, hess[id(lin)], group_size, damp)
            m = Int4Linear(lin.in_features, lin.out_features, group_size)
            m.qweight, m.scales_zeros = pack_nibbles(q), sz
            setattr(parent, name, m)
        xs = [block(x, cos, sin) for x in xs]
    _quantize_head_and_embedding(model)
    model.quant_method = "int4"  # type: ignore[assignment]
    model.quant_algorithm = "gptq"  # type: ignore[assignment]
    return model


def _block_linears_of(block: nn.Module) -> list[tuple[nn.Module, str, nn.Linear]]:
    return [
        (parent, name, child)
        for parent in block.modules()
        for name, child in parent.named_children()
        if isinstance(child, nn.Linear) and name != "router"
    ]


def quantize_model(model: GPT, method: str, group_size: int = 32) -> GPT:
    """Swap linear layers, head and embedding for integer-weight modules (in place)."""
    if method not in METHODS:
        raise ValueError(f"method={method!r}: use one of {METHODS}")
    model = model.float().cpu().eval()
    for parent, name, lin in _block_linears(model):
        w = lin.weight.detach()
        q = Int8Linear.from_weight(w) if method == "int8" else Int4Linear.from_weight(w, group_size)
        setattr(parent, name, q)
    _quantize_head_and_embedding(model)
    model.quant_method = method  # type: ignore[assignment]
    return model


def _empty_quantized(cfg: GPTConfig, method: str, group_size: int) -> GPT:
    model = GPT(cfg)
    for parent, name, lin in _block_linears(model):
        q: nn.Module = (
            Int8Linear(lin.in_features, lin.out_features)
            if method == "int8"
            else Int4Linear(lin.in_features, lin.out_features, group_size)
        )
        setattr(parent, name, q)
    head = Int8Linear(cfg.d_model, cfg.vocab_size)
    model.lm_head = head  # type: ignore[assignment]
    model.embed_tokens = Int8Embedding(  # type: ignore[assignment]
        cfg.vocab_size, cfg.d_model, shared=head if cfg.tie_embeddings else None
    )
    return model


def save_quantized(
    model: GPT, out: str | Path, method: str, group_size: int, tokenizer: str | Path | None = None
) -> Path:
    """``model.safetensors`` + ``quant_config.json`` (+ the tokenizer files) in ``out``."""
    from safetensors.torch import save_file

    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / "model.safetensors"))
    cfg = {
        "method": method,
        "algorithm": getattr(model, "quant_algorithm", "rtn"),
        "group_size": group_size,
        "model_config": model.cfg.to_dict(),
    }
    (folder / "quant_config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    if tokenizer is not None:
        tok = Path(tokenizer)
        tok = tok if tok.is_dir() else tok.parent
        for f in tok.glob("*.json"):
            shutil.copy(f, folder / f.name)
    return folder / "model.safetensors"


def load_quantized(folder: str | Path) -> GPT:
    """A runnable quantized model from :func:`save_quantized`'s folder."""
    from safetensors.torch import load_file

    folder = Path(folder)
    cfg = json.loads((folder / "quant_config.json").read_text())
    model = _empty_quantized(GPTConfig(**cfg["model_config"]), cfg["method"], cfg["group_size"])
    model.load_state_dict(load_file(str(folder / "model.safetensors")))
    model.quant_method = cfg["method"]  # type: ignore[assignment]
    return model.eval()


# -- QAT ---------------------------------------------------------------------------------------
class FakeQuantLinear(nn.Linear):
    """``nn.Linear`` whose forward uses quantize→dequantize weights, gradients straight through.

    Same parameters and state-dict keys as ``nn.Linear``: a QAT checkpoint loads into the plain
    model and then quantizes with :func:`quantize_model`.
    """

    method: str = "int8"
    group_size: int = 32

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight
        with torch.no_grad():
            if self.method == "int8":
                q, s = quantize_int8(w.float())
                wq = q.float() * s[:, None]
            else:
                q, sz = quantize_int4(w, self.group_size)
                wq = dequantize_int4(q, sz, self.group_size)
        w_ste = w + (wq.to(w.dtype) - w).detach()
        return F.linear(x, w_ste, self.bias)


def prepare_qat(model: GPT, method: str, group_size: int = 32) -> GPT:
    """Swap block linears for :class:`FakeQuantLinear` in place (weights shared, not copied)."""
    if method not in METHODS:
        raise ValueError(f"qat method={method!r}: use one of {METHODS}")
    for parent, name, lin in _block_linears(model):
        fq = FakeQuantLinear(
            lin.in_features,
            lin.out_features,
            bias=lin.bias is not None,
            device=lin.weight.device,
            dtype=lin.weight.dtype,
        )
        fq.weight = lin.weight
        fq.method, fq.group_size = method, group_size
        setattr(parent, name, fq)
    return model


def file_size(path: str | Path) -> int:
    return Path(path).stat().st_size


def fp32_size(model: GPT) -> int:
    """Bytes of an fp32 safetensors file of ``model`` (tied tensors stored once)."""
    seen: set[int] = set()
    n = 0
    for p in list(model.parameters()):
        if id(p) not in seen:
            seen.add(id(p))
            n += p.numel() * 4
    return n


def describe(model: Any) -> str:
    return getattr(model, "quant_method", "fp32")


@torch.no_grad()
def forward_tokens_per_s(
    model: GPT, data: torch.Tensor, batch_size: int = 1, min_seconds: float = 1.0
) -> float:
    """Forward-pass throughput over rows of ``data`` (at batch 1 weight-only quant pays off:
    the matmuls are weight-bandwidth bound)."""
    import time

    model.eval()
    x = data[:batch_size, :-1]
    model(x)  # warm-up (int4 repacks its weights here)
    n, t0 = 0, time.perf_counter()
    while True:
        model(x)
        n += x.numel()
        if time.perf_counter() - t0 >= min_seconds:
            return n / (time.perf_counter() - t0)


def quantize_checkpoint(
    checkpoint: str | Path,
    out: str | Path,
    method: str,
    group_size: int = 32,
    eval_path: str | None = None,
    eval_where: list[str] | None = None,
    eval_seqs: int = 64,
    measure_speed: bool = True,
    eval_seq_len: int = 256,
    calib_path: str | None = None,
    calib_seqs: int = 32,
) -> dict[str, Any]:
    """Quantize an assay checkpoint (or a local HF Llama folder) into ``out``; with
    ``eval_path``, report fp32 vs quantized perplexity, sizes and forward tokens/s."""
    import copy
    import math

    from trainer_bridge.evaluation import build_eval_tensor, evaluate, parse_where, read_texts
    from trainer_bridge.tokenizer import TextTokenizer
    from trainer_bridge.trainer import load_any_model

    model, tok_folder = load_any_model(checkpoint)
    tok = TextTokenizer(tok_folder)
    if calib_path:  # GPTQ, calibrated on this text
        seq = min(model.cfg.max_seq_len, eval_seq_len)
        calib_texts = read_texts(calib_path, max_chars=calib_seqs * seq * 8)
        calib = build_eval_tensor(calib_texts, tok, seq, calib_seqs)[:, :-1]
        qmodel = quantize_model_gptq(copy.deepcopy(model), calib, group_size)
    else:
        qmodel = quantize_model(copy.deepcopy(model), method, group_size)
    path = save_quantized(qmodel, out, method, group_size, tok.folder)
    report: dict[str, Any] = {
        "method": method,
        "algorithm": "gptq" if calib_path else "rtn",
        "group_size": group_size,
        "path": str(path),
        "bytes": file_size(path),
        "fp32_bytes": fp32_size(model),
    }
    report["size_ratio"] = report["bytes"] / report["fp32_bytes"]
    if eval_path:
        seq = min(model.cfg.max_seq_len, eval_seq_len)
        texts = read_texts(eval_path, parse_where(eval_where), max_chars=eval_seqs * seq * 8)
        data = build_eval_tensor(texts, tok, seq, eval_seqs)
        reloaded = load_quantized(out)
        base, quant = evaluate(model, data), evaluate(reloaded, data)
        report.update(
            {
                "fp32_ppl": math.exp(base),
                "ppl": math.exp(quant),
                "ppl_increase": math.exp(quant) / math.exp(base) - 1,
            }
        )
        if measure_speed:
            report["fp32_tokens_per_s"] = forward_tokens_per_s(model, data)
            report["tokens_per_s"] = forward_tokens_per_s(reloaded, data)
    return report
