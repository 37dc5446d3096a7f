"""The compact GPT: causality, GQA, RoPE, sliding window, MoE routing, weighted loss."""

from __future__ import annotations

import pytest
import torch

from trainer_bridge.model import GPT, GPTConfig, apply_rope, rope_tables


def _cfg(**kw: object) -> GPTConfig:
    base = dict(vocab_size=97, max_seq_len=64, n_layer=2, n_head=4, n_kv_head=2, d_model=32)
    base.update(kw)
    return GPTConfig(**base)  # type: ignore[arg-type]


def test_causal_and_shapes() -> None:
    torch.manual_seed(0)
    m = GPT(_cfg()).eval()
    ids = torch.randint(0, 97, (2, 20))
    out = m(ids)
    assert out.shape == (2, 20, 97)
    ids2 = ids.clone()
    ids2[:, 12] = (ids2[:, 12] + 1) % 97
    out2 = m(ids2)
    assert torch.allclose(out[:, :12], out2[:, :12], atol=1e-6)
    assert not torch.allclose(out[:, 12:], out2[:, 12:], atol=1e-4)


def test_gqa_equals_mha_with_shared_kv_heads() -> None:
    torch.manual_seed(1)
    gqa = GPT(_cfg(n_kv_head=2)).eval()
    mha = GPT(_cfg(n_kv_head=4)).eval()
    sd = gqa.state_dict()
    hd = gqa.cfg.head_dim
    for k, v in list(sd.items()):
        if k.endswith(("k_proj.weight", "v_proj.weight")):  # [kv*hd, d] -> repeat each head twice
            sd[k] = v.view(2, hd, -1).repeat_interleave(2, dim=0).reshape(4 * hd, -1)
    mha.load_state_dict(sd)
    ids = torch.randint(0, 97, (2, 16))
    assert torch.allclose(gqa(ids), mha(ids), atol=1e-5)
    assert sum(p.numel() for p in gqa.parameters()) < sum(p.numel() for p in mha.parameters())


def test_rope_scores_depend_only_on_relative_position() -> None:
    cfg = _cfg()
    cos, sin = rope_tables(cfg)
    q, k = torch.randn(cfg.head_dim), torch.randn(cfg.head_dim)

    def score(i: int, j: int) -> torch.Tensor:
        qi = apply_rope(q.view(1, 1, 1, -1), cos[i : i + 1], sin[i : i + 1])
        kj = apply_rope(k.view(1, 1, 1, -1), cos[j : j + 1], sin[j : j + 1])
        return (qi * kj).sum()

    assert torch.allclose(score(5, 2), score(40, 37), atol=1e-4)
    assert not torch.allclose(score(5, 2), score(5, 4), atol=1e-3)


def test_sliding_window_limits_receptive_field() -> None:
    torch.manual_seed(2)
    w, layers = 4, 2
    m = GPT(_cfg(sliding_window=w, n_layer=layers)).eval()
    ids = torch.randint(0, 97, (1, 24))
    ids2 = ids.clone()
    ids2[0, 0] = (ids2[0, 0] + 1) % 97
    a, b = m(ids), m(ids2)
    reach = layers * (w - 1)  # token 0 can influence positions 0..reach
    assert not torch.allclose(a[0, reach], b[0, reach], atol=1e-6)
    assert torch.allclose(a[0, reach + 1 :], b[0, reach + 1 :], atol=1e-6)
    full = GPT(_cfg(sliding_window=None, n_layer=layers)).eval()
    full.load_state_dict(m.state_dict())
    wide = GPT(_cfg(sliding_window=64, n_layer=layers)).eval()
    wide.load_state_dict(m.state_dict())
    assert torch.allclose(full(ids), wide(ids), atol=1e-5)


def test_moe_routes_top_k_and_balances() -> None:
    torch.manual_seed(3)
    m = GPT(_cfg(n_experts=4, moe_top_k=2))
    moe = m.layers[0].mlp
    x = torch.randn(5, 32)
    probs = moe.router(x).softmax(-1)
    top_p, top_i = probs.topk(2, -1)
    top_p = top_p / top_p.sum(-1, keepdim=True)
    manual = torch.stack(
        [sum(top_p[t, s] * moe.experts[int(top_i[t, s])](x[t]) for s in range(2)) for t in range(5)]
    )
    assert torch.allclose(moe(x), manual, atol=1e-5)
    ids = torch.randint(0, 97, (2, 16))
    loss, plain = m.loss(ids[:, :-1], ids[:, 1:])
    aux = m.aux_loss()
    assert aux.item() >= 0.99 * m.cfg.n_layer  # Switch loss is >= 1 per layer, 1 when balanced
    assert torch.isclose(loss, plain + m.cfg.moe_aux_weight * aux, atol=1e-5)
    loss.backward()
    assert moe.router.weight.grad is not None and moe.router.weight.grad.abs().sum() > 0


def test_per_token_weights_in_loss() -> None:
    torch.manual_seed(4)
    m = GPT(_cfg())
    ids = torch.randint(0, 97, (2, 17))
    x, y = ids[:, :-1], ids[:, 1:]
    ones, plain = m.loss(x, y, torch.ones(2, 16))
    assert torch.isclose(ones, plain, atol=1e-6)
    w = torch.zeros(2, 16)
    w[0] = 1.0
    only_first, _ = m.loss(x, y, w)
    first, _ = m.loss(x[:1], y[:1])
    assert torch.isclose(only_first, first, atol=1e-5)


def test_config_errors_name_the_field() -> None:
    with pytest.raises(ValueError, match="n_kv_head"):
        GPTConfig(n_head=4, n_kv_head=3)


def _dense_sliding_reference(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, window: int
) -> torch.Tensor:
    """The textbook version: a dense T×T band mask, softmax written out."""
    T = q.shape[2]
    i = torch.arange(T)
    dist = i[:, None] - i[None, :]
    allowed = (dist >= 0) & (dist < window)
    scores = (q @ k.transpose(-1, -2)) / q.shape[-1] ** 0.5
    scores = scores.masked_fill(~allowed, float("-inf"))
    return scores.softmax(-1) @ v


@pytest.mark.parametrize("T,window", [(24, 4), (23, 5), (7, 1), (64, 16), (10, 9)])
def test_blockwise_sliding_window_equals_dense_mask(T: int, window: int) -> None:
    from trainer_bridge.model import sliding_window_attention

    torch.manual_seed(T * 100 + window)
    q, k, v = (torch.randn(2, 3, T, 8, requires_grad=True) for _ in range(3))
    ours = sliding_window_attention(q, k, v, window)
    ref = _dense_sliding_reference(q, k, v, window)
    assert ours.shape == ref.shape
    assert torch.allclose(ours, ref, atol=1e-5), (ours - ref).abs().max()
    g = torch.randn_like(ref)
    g_ours = torch.autograd.grad(ours, (q, k, v), g)
    g_ref = torch.autograd.grad(ref, (q, k, v), g)
    for a, b in zip(g_ours, g_ref, strict=True):
        assert torch.allclose(a, b, atol=1e-5)


def test_sliding_window_builds_no_dense_mask(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every attention mask the model hands to SDPA is at most [T/W, W, 2W], never [T, T]."""
    import torch.nn.functional as F

    seen: list[tuple[int, ...]] = []
    real = F.scaled_dot_product_attention

    def spy(q, k, v, attn_mask=None, **kw):  # type: ignore[no-untyped-def]
        if attn_mask is not None:
            seen.append(tuple(attn_mask.shape))
        return real(q, k, v, attn_mask=attn_mask, **kw)

    monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
    m = GPT(_cfg(sliding_window=8, max_seq_len=64)).eval()
    m(torch.randint(0, 97, (1, 64)))
    assert seen and all(s == (8, 8, 16) for s in seen), seen


@pytest.mark.parametrize("window", [None, 6])
def test_kv_cache_logits_equal_full_forward(window: int | None) -> None:
    torch.manual_seed(5)
    m = GPT(_cfg(sliding_window=window)).eval()
    ids = torch.randint(0, 97, (2, 30))
    with torch.no_grad():
        full = m(ids)
        cache = m.new_cache()
        parts = [m(ids[:, :11], cache), m(ids[:, 11:14], cache)]  # prefill, a chunk, then 1 by 1
        parts += [m(ids[:, t : t + 1], cache) for t in range(14, 30)]
    inc = torch.cat(parts, dim=1)
    assert cache.pos == 30
    assert torch.allclose(inc, full, atol=1e-5), (inc - full).abs().max()
    if window:
        assert all(k is not None and k.shape[2] == window - 1 for k in cache.k)


@pytest.mark.parametrize("window", [None, 5])
def test_generate_with_cache_gives_the_same_tokens(trained_run, window) -> None:  # type: ignore[no-untyped-def]
    """Greedy decoding of a trained model: the KV-cache path emits the uncached path's tokens,
    also past max_seq_len (where both read the last max_seq_len tokens)."""
    from trainer_bridge.trainer import load_model

    model, _ = load_model(trained_run)
    if window:
        model = GPT(GPTConfig(**{**model.cfg.to_dict(), "sliding_window": window})).eval()
        model.load_state_dict(load_model(trained_run)[0].state_dict())
    prompt = torch.randint(
        0, model.cfg.vocab_size, (2, 10), generator=torch.Generator().manual_seed(0)
    )
    n_new = model.cfg.max_seq_len  # runs past the 64-token RoPE table
    a = model.generate(prompt, n_new, use_cache=True)
    b = model.generate(prompt, n_new, use_cache=False)
    assert a.shape == (2, 10 + n_new)
    assert torch.equal(a, b)
