"""MinHash signatures on a CUDA GPU: a real CUDA C kernel (``minhash.cu``) run through CuPy.

``dedup.minhash`` with ``device = "cuda"`` calls :func:`signatures_and_sets` here:

1. **Shingles** (CPU): :func:`dedup.signature.shingle_hashes`, the numba tokenizer — one pass
   over the UTF-8 bytes, the same code as the CPU path, so the shingles are the same bits.
2. **Permutations** (GPU): ``minhash_tiles`` in ``minhash.cu``, compiled once per process by
   NVRTC (``cupy.RawModule``): one block per tile of ≤ 2,048 shingles of one document, one
   thread per permutation, shared-memory staging, ``atomicMin`` into ``sig``. This is the
   ``num_perm × shingles`` part (128 multiply-add-shifts per shingle) that dominates the CPU
   kernel's time.
3. **Shingle sets** (GPU too): sorted unique upper-32-bit shingle values per document, by one
   ``lexsort`` (``cupy``; the same function runs with numpy in the tests), for the LSH verify.

Bit-identical to :func:`dedup.signature.signatures_and_sets`: uint64 arithmetic wraps the same
way in CUDA C, numba and numpy, and ``min`` does not depend on the order tiles finish. Tests on
this CPU-only machine: ``minhash.cu`` is compiled by ``nvcc`` to PTX (syntax, types) and, with
``-DASSAY_HOST_TEST``, as a host library whose ``perm_min`` — the kernel's arithmetic, the same
source lines — must equal the numba kernel bit for bit; the set builder is checked with numpy;
the fallback is checked by running without a GPU. The GPU parity test is marked ``gpu``.

Fallback: with ``device="cuda"`` and no usable GPU (no ``cupy``, no device), the CPU numba
kernel runs instead, and one WARNING per process names the reason; :data:`FALLBACKS` counts
the calls that fell back (the stage reports them as ``cuda_fallback_batches``).
"""

from __future__ import annotations

import logging
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from dedup.signature import DEFAULT_PARAMS, MinhashParams, shingle_hashes

log = logging.getLogger(__name__)

KERNEL_FILE = Path(__file__).with_name("minhash.cu")
TILE = 2048  # shingles per block (16 KB of shared memory)
THREADS = 128  # threads per block: one per permutation at the default num_perm
FALLBACKS = {"calls": 0}
_warned: dict[str, bool] = {}


def kernel_source() -> str:
    return KERNEL_FILE.read_text()


def cuda_unavailable_reason() -> str | None:
    """None when CuPy sees a CUDA device, else why not (one line)."""
    try:
        import cupy
    except ImportError:
        return "cupy is not installed (pip install cupy-cuda12x or cupy-cuda13x)"
    except Exception as e:  # noqa: BLE001 - a broken CUDA install raises anything
        return f"cupy failed to import: {e}"
    try:
        n = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:  # noqa: BLE001
        return f"no CUDA device ({type(e).__name__}: {e})"
    return None if n > 0 else "no CUDA device"


def plan_tiles(offsets: np.ndarray, tile: int = TILE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(doc, start, end) of every tile: each document's shingles cut into runs of ≤ ``tile``.
    Documents without shingles get no tile (their row keeps the EMPTY initial value)."""
    offsets = np.asarray(offsets, dtype=np.int64)
    lens = np.diff(offsets)
    n_tiles = -(-lens // tile)
    doc = np.repeat(np.arange(len(lens), dtype=np.int64), n_tiles)
    first = np.repeat(np.cumsum(n_tiles) - n_tiles, n_tiles)
    start = offsets[doc] + (np.arange(doc.size, dtype=np.int64) - first) * tile
    end = np.minimum(start + tile, offsets[doc + 1])
    return doc, start, end


def shingle_sets(flat: Any, offsets: Any, xp: Any = np) -> tuple[Any, Any]:
    """Each doc's sorted unique uint32 shingle set (upper 32 bits of the 64-bit hash) as
    (flat values, int64 offsets); ``xp`` is numpy or cupy (same code on CPU and GPU)."""
    offsets = xp.asarray(offsets, dtype=xp.int64)
    n_docs = int(offsets.shape[0]) - 1
    top = (xp.asarray(flat) >> xp.uint64(32)).astype(xp.uint32)
    doc = xp.repeat(xp.arange(n_docs, dtype=xp.int64), xp.diff(offsets).astype(xp.int64))
    order = xp.lexsort(xp.stack([top.astype(xp.int64), doc]))
    ts, ds = top[order], doc[order]
    keep = xp.ones(ts.shape[0], dtype=bool)
    if ts.shape[0] > 1:
        keep[1:] = (ts[1:] != ts[:-1]) | (ds[1:] != ds[:-1])
    counts = xp.bincount(ds[keep], minlength=n_docs)
    set_offsets = xp.zeros(n_docs + 1, dtype=xp.int64)
    set_offsets[1:] = xp.cumsum(counts)
    return ts[keep], set_offsets


@cache
def _kernel() -> Any:
    import cupy

    mod = cupy.RawModule(code=kernel_source(), options=(f"-DTILE={TILE}", "--std=c++17"))
    return mod.get_function("minhash_tiles")


def signatures_device(
    flat: np.ndarray, offsets: np.ndarray, params: MinhashParams = DEFAULT_PARAMS
) -> Any:
    """Signatures ``[n_docs, num_perm]`` uint32 as a CuPy array, from CPU shingle hashes."""
    import cupy

    a, b = params.coefficients()
    doc, start, end = plan_tiles(offsets)
    n_docs = len(offsets) - 1
    sig = cupy.full((n_docs, params.num_perm), 0xFFFFFFFF, dtype=cupy.uint32)
    if doc.size:
        args = (
            cupy.asarray(flat, dtype=cupy.uint64),
            cupy.asarray(doc),
            cupy.asarray(start),
            cupy.asarray(end),
            cupy.asarray(a),
            cupy.asarray(b),
            np.int32(params.num_perm),
            sig,
        )
        _kernel()((int(doc.size),), (THREADS,), args)
    return sig


def _fallback(reason: str) -> None:
    FALLBACKS["calls"] += 1
    if not _warned.get(reason):
        _warned[reason] = True
        log.warning("dedup.minhash: device='cuda' but %s; using the CPU (numba) kernel", reason)


def signatures(
    texts: pa.Array | pa.ChunkedArray | list[str],
    params: MinhashParams = DEFAULT_PARAMS,
    device: str = "cuda",
) -> np.ndarray:
    """Signatures ``[n_docs, num_perm]`` (uint32), on the GPU when there is one."""
    from dedup import signature

    reason = cuda_unavailable_reason() if device == "cuda" else "device is not 'cuda'"
    if reason:
        _fallback(reason)
        return signature.signatures(texts, params)
    flat, offsets = shingle_hashes(texts, params.ngram)
    return signatures_device(flat, offsets, params).get()


def signatures_and_sets(
    texts: pa.Array | pa.ChunkedArray | list[str],
    params: MinhashParams = DEFAULT_PARAMS,
    device: str = "cuda",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Same outputs as :func:`dedup.signature.signatures_and_sets`: (sig, set values, set
    offsets), computed on the GPU when there is one, else by the CPU kernel (logged once)."""
    from dedup import signature

    reason = cuda_unavailable_reason() if device == "cuda" else "device is not 'cuda'"
    if reason:
        _fallback(reason)
        return signature.signatures_and_sets(texts, params)
    import cupy

    flat, offsets = shingle_hashes(texts, params.ngram)
    sig = signatures_device(flat, offsets, params)
    d_flat = cupy.asarray(flat)
    values, set_offsets = shingle_sets(d_flat, offsets, xp=cupy)
    return sig.get(), values.get(), set_offsets.get()
