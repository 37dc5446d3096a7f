"""MinHash permutations in torch: runs on CUDA when there is one, else on the CPU.

Tokenizing and shingle hashing stay on the CPU (:func:`dedup.signature.shingle_hashes`, the
numba kernel: a pass over the bytes). The part that scales with ``num_perm`` — 128
multiply-add-shift permutations of every shingle and a per-document minimum — runs as dense
tensor work: shingles are processed in chunks of ``chunk`` rows, each chunk is a
``[chunk, num_perm]`` product (int64 arithmetic wraps like uint64), and per-document minima
are taken with ``scatter_reduce(amin)``.

Bit-identical to :func:`dedup.signature.signatures` (the parity test runs on torch CPU; a
``gpu``-marked test runs it on CUDA). ``min(v) >> 32 == min(v >> 32)`` for unsigned ``v``,
so the minimum is taken over the top 32 bits, which are non-negative in int64.

Fallback: ``device=None`` picks CUDA when ``torch.cuda.is_available()`` and logs which one
it used; torch itself is imported lazily (it is the ``train`` / ``gpu`` extra).
"""

from __future__ import annotations

import logging

import numpy as np
import pyarrow as pa

from dedup.signature import DEFAULT_PARAMS, EMPTY, MinhashParams, shingle_hashes

log = logging.getLogger(__name__)


def _as_int64(u: np.ndarray) -> np.ndarray:
    return u.astype(np.uint64, copy=False).view(np.int64)


def signatures_torch(
    texts: pa.Array | pa.ChunkedArray | list[str],
    params: MinhashParams = DEFAULT_PARAMS,
    device: str | None = None,
    chunk: int = 1 << 16,
) -> np.ndarray:
    """Signatures ``[n_docs, num_perm]`` (uint32), equal to the numba kernel's."""
    import torch

    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
        log.info("minhash_torch: running on %s", device)
    dev = torch.device(device)
    flat, offsets = shingle_hashes(texts, params.ngram)
    n_docs = len(offsets) - 1
    a_np, b_np = params.coefficients()
    a = torch.from_numpy(_as_int64(a_np).copy()).to(dev)
    b = torch.from_numpy(_as_int64(b_np).copy()).to(dev)
    doc_of = np.repeat(np.arange(n_docs, dtype=np.int64), np.diff(offsets))
    out = torch.full((n_docs, params.num_perm), 1 << 32, dtype=torch.int64, device=dev)
    x_all = torch.from_numpy(_as_int64(flat).copy())
    d_all = torch.from_numpy(doc_of)
    mask32 = (1 << 32) - 1
    for s in range(0, flat.size, chunk):
        x = x_all[s : s + chunk].to(dev, non_blocking=True)
        d = d_all[s : s + chunk].to(dev, non_blocking=True)
        v = x[:, None] * a[None, :] + b[None, :]  # wraps mod 2^64, like uint64
        top = (v >> 32) & mask32  # arithmetic shift, then keep the 32 high bits unsigned
        idx = d[:, None].expand(-1, params.num_perm)
        out.scatter_reduce_(0, idx, top, reduce="amin", include_self=True)
    sig = out.cpu().numpy()
    sig[sig == (1 << 32)] = int(EMPTY)  # docs without shingles
    return sig.astype(np.uint32)
