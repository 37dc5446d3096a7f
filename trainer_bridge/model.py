"""One compact GPT in one file: RMSNorm, RoPE, SwiGLU, grouped-query attention.

Options: sliding-window attention (each token sees the last ``sliding_window`` tokens) and a
mixture-of-experts FFN (top-k routing, Switch-style load-balancing loss). Parameter names follow
Hugging Face Llama (``q_proj``, ``gate_proj``, ``input_layernorm``…) so the dense model exports
to ``LlamaForCausalLM`` by renaming only the top-level prefixes, and RoPE uses Llama's
rotate-half layout so logits match after export.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class GPTConfig:
    vocab_size: int = 8192
    max_seq_len: int = 512  # RoPE table length; sequences may not exceed it
    n_layer: int = 4
    n_head: int = 4
    n_kv_head: int = 2  # grouped-query attention: n_head // n_kv_head query heads share a K/V
    d_model: int = 256
    ffn_hidden: int = 0  # SwiGLU width; 0 means 8/3 * d_model rounded up to a multiple of 64
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    tie_embeddings: bool = True  # input embedding and LM head share weights (saves V*d params)
    sliding_window: int | None = None  # attend to at most this many previous tokens (incl. self)
    n_experts: int = 0  # 0: dense SwiGLU FFN; >1: mixture of experts
    moe_top_k: int = 2
    moe_aux_weight: float = 0.01  # weight of the load-balancing loss added to the LM loss
    init_std: float = 0.02

    def __post_init__(self) -> None:
        if self.d_model % self.n_head:
            raise ValueError(f"d_model={self.d_model} must be divisible by n_head={self.n_head}")
        if self.n_head % self.n_kv_head:
            raise ValueError(
                f"n_head={self.n_head} must be a multiple of n_kv_head={self.n_kv_head}"
            )
        if (self.d_model // self.n_head) % 2:
            raise ValueError("head dim (d_model / n_head) must be even for RoPE")
        if self.n_experts == 1 or (self.n_experts and self.moe_top_k > self.n_experts):
            raise ValueError(
                f"n_experts={self.n_experts}, moe_top_k={self.moe_top_k}: need 0 or "
                "n_experts >= 2 and top_k <= n_experts"
            )
        if not self.ffn_hidden:
            self.ffn_hidden = 64 * math.ceil(8 * self.d_model / 3 / 64)

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_head

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class RMSNorm(nn.Module):
    """x / rms(x) * weight, computed in fp32 (as Llama does) for bf16 stability."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


def rope_tables(cfg: GPTConfig, device: torch.device | None = None) -> tuple[torch.Tensor, ...]:
    inv = 1.0 / (
        cfg.rope_theta ** (torch.arange(0, cfg.head_dim, 2, device=device).float() / cfg.head_dim)
    )
    t = torch.arange(cfg.max_seq_len, device=device).float()
    freqs = torch.outer(t, inv)
    emb = torch.cat([freqs, freqs], dim=-1)
    return emb.cos(), emb.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate-half RoPE on ``x`` [B, H, T, D] with tables [T, D]."""
    d = x.shape[-1] // 2
    rot = torch.cat([-x[..., d:], x[..., :d]], dim=-1)
    return x * cos + rot * sin


class Attention(nn.Module):
    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        hd = cfg.head_dim
        self.q_proj = nn.Linear(cfg.d_model, cfg.n_head * hd, bias=False)
        self.k_proj = nn.Linear(cfg.d_model, cfg.n_kv_head * hd, bias=False)
        self.v_proj = nn.Linear(cfg.d_model, cfg.n_kv_head * hd, bias=False)
        self.o_proj = nn.Linear(cfg.n_head * hd, cfg.d_model, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        c = self.cfg
        q = self.q_proj(x).view(B, T, c.n_head, c.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(B, T, c.n_kv_head, c.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(B, T, c.n_kv_head, c.head_dim).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if c.n_kv_head != c.n_head:
            rep = c.n_head // c.n_kv_head
            k = k.repeat_interleave(rep, dim=1)
            v = v.repeat_interleave(rep, dim=1)
        if c.sliding_window is not None and c.sliding_window < T:
            i = torch.arange(T, device=x.device)
            dist = i[:, None] - i[None, :]
            mask = (dist >= 0) & (dist < c.sliding_window)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        else:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.o_proj(y.transpose(1, 2).reshape(B, T, c.n_head * c.head_dim))


class SwiGLU(nn.Module):
    def __init__(self, d_model: int, hidden: int) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(d_model, hidden, bias=False)
        self.up_proj = nn.Linear(d_model, hidden, bias=False)
        self.down_proj = nn.Linear(hidden, d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class MoE(nn.Module):
    """Top-k routed SwiGLU experts with the Switch-Transformer load-balancing loss.

    ``aux = E * sum_e f_e * p_e`` where ``f_e`` is the fraction of routed slots that went to
    expert ``e`` and ``p_e`` its mean router probability: 1.0 when balanced, up to E when one
    expert takes everything.
    """

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.n_experts, self.top_k = cfg.n_experts, cfg.moe_top_k
        self.router = nn.Linear(cfg.d_model, cfg.n_experts, bias=False)
        self.experts = nn.ModuleList(
            SwiGLU(cfg.d_model, cfg.ffn_hidden) for _ in range(cfg.n_experts)
        )
        self.aux_loss = torch.zeros(())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x = x.reshape(-1, shape[-1])
        probs = self.router(x).float().softmax(-1)
        top_p, top_i = probs.topk(self.top_k, dim=-1)
        top_p = (top_p / top_p.sum(-1, keepdim=True)).to(x.dtype)
        out = torch.zeros_like(x)
        for e, expert in enumerate(self.experts):
            rows, slot = (top_i == e).nonzero(as_tuple=True)
            if rows.numel():
                out.index_add_(0, rows, expert(x[rows]) * top_p[rows, slot, None])
        frac = F.one_hot(top_i, self.n_experts).float().sum(1).mean(0) / self.top_k
        self.aux_loss = self.n_experts * (frac * probs.mean(0)).sum()
        return out.view(shape)


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.self_attn = Attention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.mlp: nn.Module = MoE(cfg) if cfg.n_experts else SwiGLU(cfg.d_model, cfg.ffn_hidden)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), cos, sin)
        return x + self.mlp(self.post_attention_layernorm(x))


def lm_loss(
    logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(weighted mean NLL, plain mean NLL detached); weighted = ``sum(w * nll) / sum(w)``."""
    nll = F.cross_entropy(
        logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1), reduction="none"
    )
    plain = nll.mean()
    if weights is None:
        return plain, plain.detach()
    w = weights.reshape(-1).to(nll.dtype)
    return (nll * w).sum() / w.sum().clamp_min(1e-8), plain.detach()


class GPT(nn.Module):
    """Decoder-only LM. ``forward(ids)`` → logits [B, T, V]; see :meth:`loss` for training."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.embed_tokens.weight
        cos, sin = rope_tables(cfg)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.apply(self._init)
        # GPT-2 scaled init of residual projections: std / sqrt(2 * n_layer)
        for name, p in self.named_parameters():
            if name.endswith(("o_proj.weight", "down_proj.weight")):
                nn.init.normal_(p, 0.0, cfg.init_std / math.sqrt(2 * cfg.n_layer))

    def _init(self, m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, 0.0, self.cfg.init_std)

    def num_params(self, non_embedding: bool = True) -> int:
        n = sum(p.numel() for p in self.parameters())
        return n - self.embed_tokens.weight.numel() if non_embedding else n

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        T = ids.shape[1]
        if T > self.cfg.max_seq_len:
            raise ValueError(f"sequence of {T} tokens exceeds max_seq_len={self.cfg.max_seq_len}")
        x = self.embed_tokens(ids)
        cos, sin = self.rope_cos[:T].to(x.dtype), self.rope_sin[:T].to(x.dtype)
        for layer in self.layers:
            x = layer(x, cos, sin)
        return self.lm_head(self.norm(x))

    def aux_loss(self) -> torch.Tensor:
        """Sum of the MoE load-balancing losses of the last forward (0 for a dense model)."""
        losses = [m.aux_loss for m in self.modules() if isinstance(m, MoE)]
        return torch.stack(losses).sum() if losses else torch.zeros(())

    def loss(
        self, ids: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(training loss, plain mean LM loss). Per-token ``weights`` scale each token's loss.

        The weighted loss is ``sum(w * nll) / sum(w)``, so SoftDedup weights change what the
        model attends to without changing the loss scale; the MoE aux loss is added on top.
        """
        train, plain = lm_loss(self(ids), labels, weights)
        if self.cfg.n_experts:
            train = train + self.cfg.moe_aux_weight * self.aux_loss()
        return train, plain

    def flops_per_token(self, seq_len: int) -> float:
        """Training FLOPs per token, 6N + 12·L·d·T (PaLM appendix B), for MFU."""
        c = self.cfg
        n = self.num_params(non_embedding=True)
        if c.tie_embeddings:  # the tied LM head still does a V x d matmul per token
            n += c.vocab_size * c.d_model
        if c.n_experts:  # only top_k of the experts run per token
            per_expert = 3 * c.d_model * c.ffn_hidden
            n -= c.n_layer * (c.n_experts - c.moe_top_k) * per_expert
        return 6 * n + 12 * c.n_layer * c.d_model * seq_len

    @torch.no_grad()
    def generate(
        self, ids: torch.Tensor, max_new_tokens: int, temperature: float = 0.0
    ) -> torch.Tensor:
        for _ in range(max_new_tokens):
            logits = self(ids[:, -self.cfg.max_seq_len :])[:, -1]
            if temperature <= 0:
                nxt = logits.argmax(-1, keepdim=True)
            else:
                nxt = torch.multinomial((logits / temperature).softmax(-1), 1)
            ids = torch.cat([ids, nxt], dim=1)
        return ids
