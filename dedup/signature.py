"""MinHash signatures over word n-gram shingles: a numba kernel beside its numpy reference.

The algorithm (one definition, two implementations that give identical bits):

1. **Words.** The UTF-8 bytes of the text are split into words: a word is a maximal run of
   ASCII letters/digits or non-ASCII bytes (so every non-Latin script, accented letters and
   CJK runs stay inside words); everything else (ASCII space, punctuation, symbols) separates.
   ASCII letters are lower-cased. No regex engine, no Python objects per word: the kernel scans
   the Arrow string buffer in place, so tokenization costs one pass over the bytes.
2. **Word hash.** FNV-1a 64 over the word's bytes, finished with the murmur3 ``fmix64`` mixer.
3. **Shingles.** Each run of ``ngram`` consecutive words (default 5) hashes to 64 bits by
   folding the word hashes (``h = (h ^ w) * FNV_PRIME``, then ``fmix64``). A document with
   fewer than ``ngram`` words has one shingle made of all its words; an empty one has none.
4. **Permutations.** ``num_perm`` multiply-add-shift hashes ``(a_i * x + b_i) >> 32`` over
   64-bit words (``a_i`` odd), drawn from ``numpy.random.default_rng(seed)``; the signature is
   the per-permutation minimum as ``uint32``. Two documents' signatures agree in position ``i``
   with probability ≈ their shingle-set Jaccard.

The numba kernel also returns each document's shingle set as sorted unique ``uint32`` (upper
32 bits of the 64-bit shingle hash). The LSH reduce uses those to verify candidate pairs by
exact Jaccard; collisions inside one document are ~n²/2³³ (1e-4 for 1,000 shingles).

Speed (this machine, one core, see docs/benchmarks/dedup.md): the numba kernel computes
signatures for ~120,000 doc chunks of 1.3 KB per CPU-second (~60,000 with shingle sets); the
numpy reference is ~400x slower (its word hashing is a Python loop) and exists to pin the
kernel's output in tests. The kernels live in :mod:`dedup.kernels` (numba's cache needs them at
module level); ``warm_up()`` compiles or loads them and reports the seconds apart.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
import pyarrow as pa

MASK64 = (1 << 64) - 1
FNV_OFFSET = 0xCBF29CE484222325
FNV_PRIME = 0x100000001B3
EMPTY = np.uint32(0xFFFFFFFF)

_WORD_RE = re.compile(rb"[0-9a-z\x80-\xff]+")


@dataclass(frozen=True)
class MinhashParams:
    """What fixes a signature: change any field and signatures are no longer comparable."""

    num_perm: int = 128
    ngram: int = 5
    seed: int = 1

    def coefficients(self) -> tuple[np.ndarray, np.ndarray]:
        """The permutations' (a, b) as uint64 arrays; ``a`` is odd."""
        return _coefficients(self.num_perm, self.seed)


DEFAULT_PARAMS = MinhashParams()


@cache
def _coefficients(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 2**64 - 1, size=num_perm, dtype=np.uint64, endpoint=True) | np.uint64(1)
    b = rng.integers(0, 2**64 - 1, size=num_perm, dtype=np.uint64, endpoint=True)
    a.setflags(write=False)
    b.setflags(write=False)
    return a, b


# --------------------------------------------------------------------------------------------
# Reference (pure Python + numpy): readable, slow, the definition the kernel must match.
# --------------------------------------------------------------------------------------------


def _fmix64(h: int) -> int:
    h ^= h >> 33
    h = (h * 0xFF51AFD7ED558CCD) & MASK64
    h ^= h >> 33
    h = (h * 0xC4CEB9FE1A85EC53) & MASK64
    h ^= h >> 33
    return h


def words(text: str) -> list[bytes]:
    """The words of ``text`` as the kernel sees them (lower-cased ASCII, UTF-8 bytes)."""
    data = text.encode("utf-8", "surrogatepass")
    lowered = data.translate(_ASCII_LOWER)
    return _WORD_RE.findall(lowered)


_ASCII_LOWER = bytes.maketrans(
    bytes(range(ord("A"), ord("Z") + 1)), bytes(range(ord("a"), ord("z") + 1))
)

#: Byte -> lower-cased byte for word bytes, 0 for separators (the kernel's tokenizer table).
_BYTE_CLASS = np.zeros(256, dtype=np.uint8)
for _c in range(256):
    _lc = _c + 32 if 65 <= _c <= 90 else _c
    if 48 <= _lc <= 57 or 97 <= _lc <= 122 or _lc >= 128:
        _BYTE_CLASS[_c] = _lc
_BYTE_CLASS.setflags(write=False)


def word_hash(word: bytes) -> int:
    h = FNV_OFFSET
    for c in word:
        h = ((h ^ c) * FNV_PRIME) & MASK64
    return _fmix64(h)


def shingle_hashes_reference(text: str, ngram: int = 5) -> np.ndarray:
    """64-bit hashes of the word n-gram shingles of ``text`` (with repeats, in order)."""
    wh = [word_hash(w) for w in words(text)]
    n = len(wh)
    if n == 0:
        return np.zeros(0, dtype=np.uint64)
    k = min(ngram, n)
    out = []
    for j in range(n - k + 1):
        h = FNV_OFFSET
        for i in range(k):
            h = ((h ^ wh[j + i]) * FNV_PRIME) & MASK64
        out.append(_fmix64(h))
    return np.array(out, dtype=np.uint64)


def signatures_reference(texts: list[str], params: MinhashParams = DEFAULT_PARAMS) -> np.ndarray:
    """Signatures (``[n_docs, num_perm]`` uint32) computed with numpy, one doc at a time."""
    a, b = params.coefficients()
    out = np.full((len(texts), params.num_perm), EMPTY, dtype=np.uint32)
    for d, text in enumerate(texts):
        h = shingle_hashes_reference(text, params.ngram)
        if h.size == 0:
            continue
        with np.errstate(over="ignore"):
            v = (a[:, None] * h[None, :] + b[:, None]) >> np.uint64(32)
        out[d] = v.min(axis=1).astype(np.uint32)
    return out


def shingle_set_reference(text: str, ngram: int = 5) -> np.ndarray:
    """Sorted unique uint32 shingle hashes (what the LSH verification compares)."""
    return np.unique((shingle_hashes_reference(text, ngram) >> np.uint64(32)).astype(np.uint32))


def jaccard_sorted(x: np.ndarray, y: np.ndarray) -> float:
    """Exact Jaccard of two sorted unique arrays (0.0 when both are empty)."""
    if x.size == 0 and y.size == 0:
        return 0.0
    inter = np.intersect1d(x, y, assume_unique=True).size
    return inter / (x.size + y.size - inter)


# --------------------------------------------------------------------------------------------
# The numba kernel.
# --------------------------------------------------------------------------------------------


_KERNELS: dict[str, object] = {}
JIT_SECONDS: dict[str, float] = {}
_WARM: set[str] = set()
#: what ``warm_up()`` with no names loads (``shingle_hashes`` loads on its first call)
ALL_KERNELS = ("signatures", "signatures_and_sets", "jaccard_pairs", "word_ids")


def _kernels() -> dict[str, object]:
    """The numba kernels (importing :mod:`dedup.kernels`, i.e. numba, once per process); each
    compiles or loads from the on-disk cache on its first call (see :func:`warm_up`)."""
    if _KERNELS:
        return _KERNELS
    from dedup import kernels as kn

    _KERNELS.update({name: getattr(kn, name) for name in (*ALL_KERNELS, "shingle_hashes")})
    return _KERNELS


def warm_up(*names: str) -> float:
    """Compile or load the named kernels now (default: all), on tiny inputs, so JIT time is
    measured apart; returns the seconds this call took (``JIT_SECONDS["minhash"]`` adds up every
    call). A stage warms only what it calls: each cached kernel costs a load in every process.
    Same array kinds as real calls (Arrow buffers are read-only), or numba compiles again."""
    t0 = time.perf_counter()
    a, b = _coefficients(4, 1)
    raw = np.frombuffer(b"warm up the kernel once", dtype=np.uint8)  # read-only, like Arrow's
    offs = np.frombuffer(np.array([0, raw.size], dtype=np.int64).tobytes(), dtype=np.int64)
    sig = np.empty((1, 4), dtype=np.uint32)
    so = np.empty(2, dtype=np.int64)
    k: dict[str, Any] = {}
    calls = {
        "signatures": lambda: k["signatures"](raw, offs, _BYTE_CLASS, a, b, 5, sig),
        "signatures_and_sets": lambda: k["signatures_and_sets"](raw, offs, _BYTE_CLASS, a, b, 5, sig, so),
        "jaccard_pairs": lambda: k["jaccard_pairs"](  # a kernel's (writable) output, like callers'
            np.array([1, 2], np.uint32), np.array([0, 2], np.int64), np.zeros(1, np.int64),
            np.zeros(1, np.int64), np.empty(1)),
        "word_ids": lambda: k["word_ids"](raw, offs, _BYTE_CLASS, np.empty(2, dtype=np.int64)),
        "shingle_hashes": lambda: k["shingle_hashes"](raw, offs, _BYTE_CLASS, 5, np.empty(2, dtype=np.int64)),
    }
    from pipeline import _aot

    for name in names or ALL_KERNELS:
        if name in _aot.SPECS and _aot.kernels() is not None:
            continue  # its ahead-of-time compiled copy is used (loaded: no numba at all)
        if name not in _WARM:
            k.update(_kernels())
            calls[name]()  # KeyError: not a kernel of this module
            _WARM.add(name)
    dt = time.perf_counter() - t0
    JIT_SECONDS["minhash"] = JIT_SECONDS.get("minhash", 0.0) + dt
    return dt


def _string_buffers(texts: pa.Array | pa.ChunkedArray | list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(UTF-8 bytes, int64 offsets) of a string column, zero-copy where Arrow allows."""
    if isinstance(texts, list):
        texts = pa.array(texts, type=pa.large_string())
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks() if texts.num_chunks != 1 else texts.chunk(0)
    if texts.type != pa.large_string():
        texts = texts.cast(pa.large_string())
    if texts.null_count:
        texts = texts.fill_null("")
    _, offs_buf, data_buf = texts.buffers()
    offsets = np.frombuffer(offs_buf, dtype=np.int64)[texts.offset : texts.offset + len(texts) + 1]
    data = (
        np.frombuffer(data_buf, dtype=np.uint8)
        if data_buf is not None
        else np.zeros(0, dtype=np.uint8)
    )
    return data, offsets


def signatures(
    texts: pa.Array | pa.ChunkedArray | list[str], params: MinhashParams = DEFAULT_PARAMS
) -> np.ndarray:
    """Signatures ``[n_docs, num_perm]`` (uint32) with the numba kernel."""
    k = _kernels()
    data, offsets = _string_buffers(texts)
    a, b = params.coefficients()
    sig = np.empty((len(offsets) - 1, params.num_perm), dtype=np.uint32)
    k["signatures"](data, offsets, _BYTE_CLASS, a, b, params.ngram, sig)  # type: ignore[operator]
    return sig


def signatures_and_sets(
    texts: pa.Array | pa.ChunkedArray | list[str], params: MinhashParams = DEFAULT_PARAMS
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Signatures plus each doc's sorted unique uint32 shingle set (flat values, offsets)."""
    from pipeline import _aot

    data, offsets = _string_buffers(texts)
    a, b = params.coefficients()
    n = len(offsets) - 1
    sig = np.empty((n, params.num_perm), dtype=np.uint32)
    set_offsets = np.empty(n + 1, dtype=np.int64)
    args = (data, offsets, _BYTE_CLASS, a, b, params.ngram, sig, set_offsets)
    flat = _aot.call_or_jit("signatures_and_sets", lambda: _kernels()["signatures_and_sets"], *args)
    return sig, flat, set_offsets


def shingle_hashes(
    texts: pa.Array | pa.ChunkedArray | list[str], ngram: int = 5
) -> tuple[np.ndarray, np.ndarray]:
    """Each doc's 64-bit shingle hashes in order (flat uint64 values, int64 offsets); the
    input of the permutation step, for other back ends (``cuda_ext.minhash``, the CUDA kernel)."""
    k = _kernels()
    data, offsets = _string_buffers(texts)
    out_offsets = np.empty(len(offsets), dtype=np.int64)
    flat = k["shingle_hashes"](data, offsets, _BYTE_CLASS, ngram, out_offsets)  # type: ignore[operator]
    return flat, out_offsets


def word_ids(texts: pa.Array | pa.ChunkedArray | list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Each doc's words as uint32 ids (upper half of the word hash): flat values, offsets."""
    k = _kernels()
    data, offsets = _string_buffers(texts)
    out_offsets = np.empty(len(offsets), dtype=np.int64)
    flat = k["word_ids"](data, offsets, _BYTE_CLASS, out_offsets)  # type: ignore[operator]
    return flat, out_offsets


def jaccard_pairs(
    flat: np.ndarray, offsets: np.ndarray, left: np.ndarray, right: np.ndarray
) -> np.ndarray:
    """Exact Jaccard for each (left[k], right[k]) doc pair of a flat sorted-set store."""
    k = _kernels()
    out = np.empty(len(left), dtype=np.float64)
    k["jaccard_pairs"](flat, offsets, left.astype(np.int64), right.astype(np.int64), out)  # type: ignore[operator]
    return out
