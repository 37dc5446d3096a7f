"""KV-cache decoding and block-wise sliding-window attention vs their plain versions.

    nice assay bench generation

- **generate**: greedy decoding of ``--new`` tokens from a 16-token prompt with
  ``GPT.generate(use_cache=True)`` vs ``use_cache=False`` (same model, same process; the
  tokens are asserted equal), tokens/s.
- **sliding window**: one attention call at T=``--seq`` with window W=``--window``:
  block-wise (``sliding_window_attention``, scores T·2W) vs SDPA with a dense T×T boolean
  mask; seconds and the bytes of the mask + scores each materialises (computed, not sampled).
"""

from __future__ import annotations

import argparse
import json
import time


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--new", type=int, default=200)
    ap.add_argument("--seq", type=int, default=4096)
    ap.add_argument("--window", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args(argv)
    import torch
    import torch.nn.functional as F

    from trainer_bridge.model import GPT, GPTConfig, sliding_window_attention

    torch.set_num_threads(1)
    torch.manual_seed(0)
    m = GPT(
        GPTConfig(vocab_size=8192, max_seq_len=512, n_layer=4, n_head=4, n_kv_head=2, d_model=256)
    ).eval()
    prompt = torch.randint(0, 8192, (1, 16))
    res: dict = {"model_params": m.num_params(False)}
    times = {}
    outs = {}
    for use in (True, False):
        best = float("inf")
        for _ in range(a.repeats):
            t0 = time.perf_counter()
            outs[use] = m.generate(prompt, a.new, use_cache=use)
            best = min(best, time.perf_counter() - t0)
        times[use] = best
    assert torch.equal(outs[True], outs[False])
    res["generate"] = {
        "new_tokens": a.new,
        "cached_tokens_per_s": a.new / times[True],
        "uncached_tokens_per_s": a.new / times[False],
        "speedup": times[False] / times[True],
    }
    B, H, D, T, W = 1, 4, 64, a.seq, a.window
    q, k, v = (torch.randn(B, H, T, D) for _ in range(3))
    i = torch.arange(T)
    dist = i[:, None] - i[None, :]

    def dense() -> torch.Tensor:
        mask = (dist >= 0) & (dist < W)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)

    def blocked() -> torch.Tensor:
        return sliding_window_attention(q, k, v, W)

    secs = {}
    for name, fn in (("blockwise", blocked), ("dense_mask", dense)):
        fn()
        best = float("inf")
        for _ in range(a.repeats):
            t0 = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t0)
        secs[name] = best
    assert torch.allclose(blocked(), dense(), atol=1e-5)
    nb = -(-T // W)
    res["sliding_window"] = {
        "T": T,
        "W": W,
        "blockwise_s": secs["blockwise"],
        "dense_mask_s": secs["dense_mask"],
        "mask_bytes_blockwise": nb * W * 2 * W,
        "mask_bytes_dense": T * T,
        "score_floats_blockwise_per_head": nb * W * 2 * W,
        "score_floats_dense_per_head": T * T,
    }
    print(json.dumps(res, indent=1))
    return res


if __name__ == "__main__":
    main()
