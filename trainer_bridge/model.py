"""One compact GPT in one file: RMSNorm, RoPE, SwiGLU, grouped-query attention.

Options: sliding-window attention (each token sees the last ``sliding_window`` tokens, computed
block-wise so no T×T mask or score matrix exists: memory O(T·2W)) and a mixture-of-experts FFN
(top-k routing, Switch-style load-balancing loss). ``generate`` decodes with a KV cache
(:class:`KVCache`; a sliding-window model keeps only the last W-1 keys per layer). Parameter names follow
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


def check_count(name: str, v: Any, least: int) -> None:
    """``v`` must be an integer >= ``least``: else one line naming the field (not a negative
    tensor dimension or a division by zero deep in the first step)."""
    if isinstance(v, bool) or not isinstance(v, int) or v < least:
        raise ValueError(f"{name}={v!r}: use an integer >= {least}")


def check_fraction(name: str, v: Any, lo: float = 0.0, hi: float = 1.0, open_lo: bool = False) -> None:
    """``v`` must be a finite number in [lo, hi] (or (lo, hi] with ``open_lo``)."""
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and \
        (v > lo if open_lo else v >= lo) and v <= hi
    if not ok:
        raise ValueError(f"{name}={v!r}: use a number in {'(' if open_lo else '['}{lo:g}, {hi:g}]")


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
        for name in ("vocab_size", "max_seq_len", "n_layer", "n_head", "n_kv_head", "d_model"):
            check_count(name, getattr(self, name), 1)
        check_count("ffn_hidden", self.ffn_hidden, 0)
        check_count("n_experts", self.n_experts, 0)
        if self.sliding_window is not None:
            check_count("sliding_window", self.sliding_window, 1)
        if self.n_experts:
            check_count("moe_top_k", self.moe_top_k, 1)
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


def sliding_window_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, window: int
) -> torch.Tensor:
    """Causal attention where query ``t`` sees keys ``t-window+1 .. t``; q, k, v [B, H, T, D].

    Block-wise: the sequence is cut into blocks of ``window`` queries, and each block attends
    to its own keys and the previous block's (2W keys) under one static [W, 2W] band mask. No
    T×T mask or score matrix is ever built: scores take ``T·2W`` floats per head instead of
    ``T²`` (T=4096, W=256: 8× less). Equal to dense masked attention (the test compares).
    """
    B, H, T, D = q.shape
    W = window
    nb = -(-T // W)
    pad = nb * W - T
    if pad:  # pad queries/keys at the end; padded queries are cut off, padded keys are never
        q, k, v = (F.pad(z, (0, 0, 0, pad)) for z in (q, k, v))  # in a real query's band
    qb = q.view(B, H, nb, W, D)
    kb, vb = k.view(B, H, nb, W, D), v.view(B, H, nb, W, D)
    kk = torch.cat([F.pad(kb, (0, 0, 0, 0, 1, 0))[:, :, :-1], kb], dim=3)  # [B, H, nb, 2W, D]
    vv = torch.cat([F.pad(vb, (0, 0, 0, 0, 1, 0))[:, :, :-1], vb], dim=3)
    j = torch.arange(W, device=q.device)[:, None]
    m = torch.arange(2 * W, device=q.device)[None, :]
    dist = W + j - m  # query position minus key position
    band = ((dist >= 0) & (dist < W)).expand(nb, W, 2 * W).clone()
    band[0, :, :W] = False  # block 0 has no previous block (those keys are padding)
    y = F.scaled_dot_product_attention(qb, kk, vv, attn_mask=band)
    return y.reshape(B, H, nb * W, D)[:, :, :T]


class KVCache:
    """Keys and values (after RoPE, before GQA repeat) of the tokens decoded so far, per layer.

    ``pos`` is the absolute position of the next token. With ``window`` set only the last
    ``window - 1`` entries are kept: all a next token can see besides itself.
    """

    def __init__(self, n_layer: int, window: int | None = None) -> None:
        self.k: list[torch.Tensor | None] = [None] * n_layer
        self.v: list[torch.Tensor | None] = [None] * n_layer
        self.window = window
        self.pos = 0

    def update(
        self, layer: int, k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, int]:
        """(all keys, all values, number of cached tokens before these) for ``layer``."""
        pk, pv = self.k[layer], self.v[layer]
        prev = 0 if pk is None else pk.shape[2]
        if pk is not None and pv is not None:
            k, v = torch.cat([pk, k], dim=2), torch.cat([pv, v], dim=2)
        keep = k if self.window is None else k[:, :, max(0, k.shape[2] - self.window + 1) :]
        self.k[layer] = keep
        self.v[layer] = v[:, :, v.shape[2] - keep.shape[2] :]
        return k, v, prev


class Attention(nn.Module):
    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        hd = cfg.head_dim
        self.q_proj = nn.Linear(cfg.d_model, cfg.n_head * hd, bias=False)
        self.k_proj = nn.Linear(cfg.d_model, cfg.n_kv_head * hd, bias=False)
        self.v_proj = nn.Linear(cfg.d_model, cfg.n_kv_head * hd, bias=False)
        self.o_proj = nn.Linear(cfg.n_head * hd, cfg.d_model, bias=False)

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        cache: KVCache | None = None,
        layer: int = 0,
    ) -> torch.Tensor:
        B, T, _ = x.shape
        c = self.cfg
        q = self.q_proj(x).view(B, T, c.n_head, c.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(B, T, c.n_kv_head, c.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(B, T, c.n_kv_head, c.head_dim).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        prev = 0
        if cache is not None:
            k, v, prev = cache.update(layer, k, v)
        if c.n_kv_head != c.n_head:
            rep = c.n_head // c.n_kv_head
            k = k.repeat_interleave(rep, dim=1)
            v = v.repeat_interleave(rep, dim=1)
        W = c.sliding_window
        if prev and T == 1:  # decoding: the cache holds exactly what the new token may see
            y = F.scaled_dot_product_attention(q, k, v)
        elif prev:  # a chunk after a cached prefix: [T, prev + T] mask (prev < W when sliding)
            qpos = torch.arange(prev, prev + T, device=x.device)[:, None]
            dist = qpos - torch.arange(prev + T, device=x.device)[None, :]
            mask = (dist >= 0) & (dist < (W if W is not None else prev + T))
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        elif W is not None and W < T:
            y = sliding_window_attention(q, k, v, W)
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

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        cache: KVCache | None = None,
        layer: int = 0,
    ) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, cache, layer)
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

    def forward(self, ids: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """Logits [B, T, V]. With ``cache``, ``ids`` continue the cached tokens (positions
        ``cache.pos ..``) and the cache is extended."""
        T = ids.shape[1]
        start = cache.pos if cache is not None else 0
        if start + T > self.cfg.max_seq_len:
            raise ValueError(
                f"sequence of {start + T} tokens exceeds max_seq_len={self.cfg.max_seq_len}"
            )
        x = self.embed_tokens(ids)
        cos = self.rope_cos[start : start + T].to(x.dtype)
        sin = self.rope_sin[start : start + T].to(x.dtype)
        for i, layer in enumerate(self.layers):
            x = layer(x, cos, sin, cache, i)
        if cache is not None:
            cache.pos += T
        return self.lm_head(self.norm(x))

    def new_cache(self) -> KVCache:
        return KVCache(self.cfg.n_layer, self.cfg.sliding_window)

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
        self,
        ids: torch.Tensor,
        max_new_tokens: int,
        temperature: float = 0.0,
        use_cache: bool = True,
    ) -> torch.Tensor:
        """Append ``max_new_tokens`` tokens (greedy at ``temperature`` 0).

        With ``use_cache`` each new token costs one single-token forward over the cached
        keys/values instead of a forward over the whole context; the tokens are the same
        (the test compares). Past ``max_seq_len`` both paths read only the last
        ``max_seq_len`` tokens from position 0, so the cached path re-fills its cache there.
        """
        L = self.cfg.max_seq_len

        def pick(logits: torch.Tensor) -> torch.Tensor:
            if temperature <= 0:
                return logits.argmax(-1, keepdim=True)
            return torch.multinomial((logits / temperature).softmax(-1), 1)

        if not use_cache:
            for _ in range(max_new_tokens):
                ids = torch.cat([ids, pick(self(ids[:, -L:])[:, -1])], dim=1)
            return ids
        cache = self.new_cache()
        logits = self(ids[:, -L:], cache)[:, -1]
        for i in range(max_new_tokens):
            nxt = pick(logits)
            ids = torch.cat([ids, nxt], dim=1)
            if i == max_new_tokens - 1:
                break
            if cache.pos >= L:  # RoPE table exhausted: restart from the last L tokens
                cache = self.new_cache()
                logits = self(ids[:, -L:], cache)[:, -1]
            else:
                logits = self(nxt, cache)[:, -1]
        return ids
