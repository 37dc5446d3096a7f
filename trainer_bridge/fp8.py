"""FP8 training matmuls (e4m3, per-tensor dynamic scales) for the trainer's ``precision="fp8"``.

Each block linear's forward runs as ``torch._scaled_mm`` on e4m3 inputs and weights, each
scaled so its absolute maximum maps to 448 (e4m3's largest finite value), with bf16 output;
the backward GEMMs run in the activations' dtype (bf16 under autocast) on the saved
high-precision tensors — the "fp8 forward, bf16 backward" recipe, simpler than torchao's
e5m2 gradients and less aggressive. The embedding, LM head and norms stay in bf16.

Where it runs: Hopper/Ada GPUs (compute capability ≥ 8.9) have fp8 tensor cores; older GPUs
are refused with a clear error. torch also has a CPU ``_scaled_mm`` (slow, emulated): the
tests use it to check the numerics on this machine, so the code path is tested without a GPU.
No FP8 speed or MFU figure exists for this project yet (no GPU was available).
"""

from __future__ import annotations

import torch
from torch import nn

E4M3_MAX = 448.0


def to_e4m3(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(e4m3 tensor, fp32 scale) with ``t ≈ q.float() * scale``."""
    scale = (t.detach().abs().amax().float() / E4M3_MAX).clamp_min(1e-12)
    q = (t.float() / scale).clamp(-E4M3_MAX, E4M3_MAX).to(torch.float8_e4m3fn)
    return q, scale


class _FP8Matmul(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x, w)
        xq, sx = to_e4m3(x)
        wq, sw = to_e4m3(w)
        # mat2 must be column-major: the transpose of a row-major [out, in] weight is
        y = torch._scaled_mm(xq, wq.t(), scale_a=sx, scale_b=sw, out_dtype=torch.bfloat16)
        return y.to(x.dtype)

    @staticmethod
    def backward(ctx, gy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        x, w = ctx.saved_tensors
        gx = gy @ w.to(gy.dtype)
        gw = gy.t() @ x.to(gy.dtype)
        return gx, gw.to(w.dtype)


class FP8Linear(nn.Linear):
    """``nn.Linear`` (same parameters and state-dict keys) whose matmul runs in FP8."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        dtype = (
            torch.get_autocast_dtype(x.device.type)
            if torch.is_autocast_enabled(x.device.type)
            else x.dtype
        )
        x2 = x.reshape(-1, shape[-1]).to(dtype)
        with torch.autocast(x.device.type, enabled=False):
            y = _FP8Matmul.apply(x2, self.weight)
        if self.bias is not None:
            y = y + self.bias.to(y.dtype)
        return y.view(*shape[:-1], self.out_features)


def fp8_supported(device: str) -> tuple[bool, str]:
    """(usable, why not) for ``device``."""
    if not hasattr(torch, "float8_e4m3fn") or not hasattr(torch, "_scaled_mm"):
        return False, f"torch {torch.__version__} has no float8_e4m3fn / _scaled_mm"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            return False, "no CUDA device"
        cap = torch.cuda.get_device_capability()
        if cap < (8, 9):
            name = torch.cuda.get_device_name()
            return False, f"{name} is compute capability {cap[0]}.{cap[1]}; FP8 needs >= 8.9"
    return True, ""


def convert_to_fp8(model: nn.Module, device: str) -> int:
    """Swap block linears whose dims are multiples of 16 for :class:`FP8Linear` (in place);
    returns how many were swapped. Raises ``ValueError`` where FP8 cannot run."""
    ok, why = fp8_supported(device)
    if not ok:
        raise ValueError(f"precision='fp8': {why}; use precision='bf16'")
    swapped = 0
    for block in getattr(model, "layers", []):
        for parent in block.modules():
            for name, child in list(parent.named_children()):
                if (
                    type(child) is nn.Linear
                    and name != "router"
                    and child.in_features % 16 == 0
                    and child.out_features % 16 == 0
                ):
                    fp8 = FP8Linear(
                        child.in_features,
                        child.out_features,
                        bias=child.bias is not None,
                        device=child.weight.device,
                        dtype=child.weight.dtype,
                    )
                    fp8.weight = child.weight
                    if child.bias is not None:
                        fp8.bias = child.bias
                    setattr(parent, name, fp8)
                    swapped += 1
    return swapped


__all__ = ["FP8Linear", "convert_to_fp8", "fp8_supported", "to_e4m3"]
