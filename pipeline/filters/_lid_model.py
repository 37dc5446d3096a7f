"""Read a fastText supervised model file (``.bin`` or quantized ``.ftz``) into numpy arrays for
:mod:`pipeline.filters._lid_kernel`.

The layout is fastText 0.9's (``src/fasttext.cc`` ``loadModel``): magic and version, ``Args``,
the ``Dictionary`` (entries, then the pruned-bucket index of a quantized model), the input
matrix (dense or product-quantized), the output matrix. Rows of a quantized matrix are decoded
exactly as ``ProductQuantizer::addcode`` adds them (``alpha * centroid`` in float32), so adding a
decoded row gives the bits fastText's own ``computeHidden`` gives.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

FASTTEXT_MAGIC = 793712314
FASTTEXT_VERSION = 12
_LOSS_HS = 1  # enum loss_name { hs = 1, ns, softmax, ova }
_MODEL_SUP = 3
_TYPE_WORD, _TYPE_LABEL = 0, 1
_KSUB = 256  # 2**nbits, nbits = 8 in fastText's ProductQuantizer
#: fastText's FNV-1a offset basis and prime (Dictionary::hash)
FNV_OFFSET = 2166136261
FNV_PRIME = 16777619


@dataclass
class LidModel:
    """The arrays the kernel needs; built once per process from the model file."""

    dim: int
    minn: int
    maxn: int
    bucket: int
    nwords: int
    labels: list[str]  # without the ``__label__`` prefix
    input_rows: np.ndarray  # float32 [nwords + n_buckets_kept, dim], decoded
    bucket_row: np.ndarray  # int32 [bucket]: row of hash % bucket, -1 when pruned away
    # the same map, compact (what the kernel reads: ~0.5 MB for lid.176 instead of 8 MB, so the
    # ~89% of n-gram lookups that find a pruned bucket stay in cache): bit b of bucket_bits says
    # whether bucket b has a row, which is rank_row[bucket_rank[b // 64] + (set bits below b)]
    bucket_bits: np.ndarray  # uint64 [ceil(bucket / 64)]
    bucket_rank: np.ndarray  # int64 [ceil(bucket / 64)]: set bits in the words before
    rank_row: np.ndarray  # int32 [buckets kept]: their rows, in bucket order
    word_table: np.ndarray  # int32 [2**k]: open addressing over word hashes, -1 empty
    word_hash: np.ndarray  # uint32 [nwords]
    word_bytes: np.ndarray  # uint8, all words' UTF-8 bytes
    word_offsets: np.ndarray  # int64 [nwords + 1]
    sub_offsets: np.ndarray  # int64 [nwords + 1]: each word's rows (itself, then its n-grams)
    sub_rows: np.ndarray  # int32
    out_kind: int  # 0 dense, 1 quantized
    out_dense: np.ndarray  # float32 [nlabels - 1, dim] (hs inner nodes) when dense
    out_codes: np.ndarray  # uint8 [m, nsubq]
    out_centroids: np.ndarray  # float32
    out_norms: np.ndarray  # float32 [m] (1.0 when the output has no quantized norms)
    out_nsubq: int
    out_dsub: int
    out_lastdsub: int
    eos_id: int  # the word "</s>" (-1: not in the vocabulary)
    tree_left: np.ndarray  # int32 [2 * nlabels - 1]
    tree_right: np.ndarray  # int32


def fnv1a(b: bytes) -> int:
    """fastText's ``Dictionary::hash``: FNV-1a over the bytes, each sign-extended as int8."""
    h = FNV_OFFSET
    for c in b:
        h ^= c | 0xFFFFFF00 if c >= 0x80 else c
        h = (h * FNV_PRIME) & 0xFFFFFFFF
    return h


def subword_hashes(word: bytes, minn: int, maxn: int) -> list[int]:
    """``Dictionary::computeSubwords`` on ``word`` (already wrapped in ``<`` ``>``): raw hashes."""
    out = []
    n_bytes = len(word)
    for i in range(n_bytes):
        if word[i] & 0xC0 == 0x80:
            continue
        j, n = i, 1
        while j < n_bytes and n <= maxn:
            j += 1
            while j < n_bytes and word[j] & 0xC0 == 0x80:
                j += 1
            if n >= minn and not (n == 1 and (i == 0 or j == n_bytes)):
                out.append(fnv1a(word[i:j]))
            n += 1
    return out


class _Reader:
    def __init__(self, buf: bytes):
        self.buf, self.pos = buf, 0

    def take(self, fmt: str) -> tuple:
        size = struct.calcsize(fmt)
        out = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += size
        return out

    def array(self, dtype: str, count: int) -> np.ndarray:
        a = np.frombuffer(self.buf, dtype=dtype, count=count, offset=self.pos).copy()
        self.pos += a.nbytes
        return a

    def cstring(self) -> bytes:
        end = self.buf.index(b"\0", self.pos)
        s = self.buf[self.pos : end]
        self.pos = end + 1
        return s


def _read_pq(r: _Reader) -> tuple[int, int, int, int, np.ndarray]:
    dim, nsubq, dsub, lastdsub = r.take("<4i")
    return dim, nsubq, dsub, lastdsub, r.array("<f4", dim * _KSUB)


def _read_matrix(r: _Reader, quantized: bool) -> dict:
    if not quantized:
        m, n = r.take("<2q")
        return {"dense": r.array("<f4", m * n).reshape(m, n)}
    (qnorm,) = r.take("<?")
    m, n = r.take("<2q")
    (codesize,) = r.take("<i")
    codes = r.array("u1", codesize)
    dim, nsubq, dsub, lastdsub, centroids = _read_pq(r)
    norms = np.ones(m, np.float32)
    if qnorm:
        norm_codes = r.array("u1", m)
        _, _, _, _, norm_centroids = _read_pq(r)  # dim 1, one sub-quantizer
        norms = norm_centroids[norm_codes].astype(np.float32)
    return {
        "m": m,
        "n": n,
        "codes": codes.reshape(m, nsubq),
        "centroids": centroids,
        "norms": norms,
        "nsubq": nsubq,
        "dsub": dsub,
        "lastdsub": lastdsub,
    }


def _centroid_index(q: dict, sub: int, code: np.ndarray) -> np.ndarray:
    """Start of each code's centroid in ``q['centroids']`` (``ProductQuantizer::get_centroids``)."""
    if sub == q["nsubq"] - 1:
        return sub * _KSUB * q["dsub"] + code.astype(np.int64) * q["lastdsub"]
    return (sub * _KSUB + code.astype(np.int64)) * q["dsub"]


def _decode_rows(q: dict) -> np.ndarray:
    """Every row as ``addcode`` adds it: ``alpha * c[n]`` rounded to float32."""
    out = np.empty((q["m"], q["n"]), np.float32)
    for sub in range(q["nsubq"]):
        d = q["lastdsub"] if sub == q["nsubq"] - 1 else q["dsub"]
        start = _centroid_index(q, sub, q["codes"][:, sub])
        for k in range(d):
            out[:, sub * q["dsub"] + k] = q["norms"] * q["centroids"][start + k]
    return out


def _build_tree(counts: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """``HierarchicalSoftmaxLoss::buildTree`` (counts are sorted, most frequent first)."""
    osz = len(counts)
    size = 2 * osz - 1
    count = [10**15] * size
    left = np.full(size, -1, np.int32)
    right = np.full(size, -1, np.int32)
    for i in range(osz):
        count[i] = counts[i]
    leaf, node = osz - 1, osz
    for i in range(osz, size):
        mini = [0, 0]
        for j in range(2):
            if leaf >= 0 and count[leaf] < count[node]:
                mini[j] = leaf
                leaf -= 1
            else:
                mini[j] = node
                node += 1
        left[i], right[i] = mini
        count[i] = count[mini[0]] + count[mini[1]]
    return left, right


def _word_rows_reference(
    words: list[bytes], minn: int, maxn: int, bucket: int, bucket_row: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``Dictionary::initNgrams`` in Python (the numba ``word_rows``' reference)."""
    rows: list[int] = []
    offsets = [0]
    for i, w in enumerate(words):
        rows.append(i)
        if w != b"</s>":
            for h in subword_hashes(b"<" + w + b">", minn, maxn):
                row = int(bucket_row[h % bucket])
                if row >= 0:
                    rows.append(row)
        offsets.append(len(rows))
    hashes = np.array([fnv1a(w) for w in words], np.uint32)
    return hashes, np.array(offsets, np.int64), np.array(rows, np.int32)


def bucket_index(bucket_row: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``bucket_row`` as (bucket_bits, bucket_rank, rank_row), see :class:`LidModel`."""
    kept = bucket_row >= 0
    nwords64 = (len(bucket_row) + 63) // 64
    padded = np.zeros(nwords64 * 64, bool)
    padded[: len(bucket_row)] = kept
    bits = np.packbits(padded, bitorder="little").view("<u8").astype(np.uint64)
    per_word = padded.reshape(nwords64, 64).sum(axis=1, dtype=np.int64)
    rank = np.zeros(nwords64, np.int64)
    if nwords64:
        rank[1:] = np.cumsum(per_word)[:-1]
    return bits, rank, bucket_row[kept].astype(np.int32)


def load(path: str, fast: bool = True) -> LidModel:
    """Parse a fastText supervised model (hierarchical softmax, wordNgrams=1, like lid.176);
    ``fast``: the words' n-gram rows by the numba kernel, else by the Python reference."""
    with open(path, "rb") as f:
        r = _Reader(f.read())
    magic, version = r.take("<2i")
    if magic != FASTTEXT_MAGIC or version > FASTTEXT_VERSION:
        raise ValueError(f"lid.fasttext: {path} is not a fastText model (magic {magic})")
    dim, _ws, _epoch, _min_count, _neg, word_ngrams, loss, model, bucket, minn, maxn, _lr_rate = (
        r.take("<12i")
    )
    r.take("<d")
    if version == 11:  # fastText's loadModel: supervised models of version 11 had no subwords
        maxn = 0
    if model != _MODEL_SUP or loss not in (_LOSS_HS,) or word_ngrams > 1:
        raise ValueError(
            f"lid.fasttext: {path}: the fast kernel reads supervised hierarchical-softmax models "
            'with wordNgrams=1 (lid.176); set impl = "fasttext" for this model'
        )
    size, nwords, nlabels = r.take("<3i")
    r.take("<q")  # ntokens
    (pruneidx_size,) = r.take("<q")
    words: list[bytes] = []
    label_names: list[str] = []
    label_counts: list[int] = []
    for _ in range(size):
        w = r.cstring()
        count, kind = r.take("<qb")
        if kind == _TYPE_WORD:
            words.append(w)
        else:
            label_names.append(w.decode().removeprefix("__label__"))
            label_counts.append(count)
    assert len(words) == nwords and len(label_names) == nlabels
    bucket_row = np.full(bucket, -1, np.int32)
    if pruneidx_size > 0:
        pairs = r.array("<i4", 2 * pruneidx_size).reshape(-1, 2)
        bucket_row[pairs[:, 0]] = nwords + pairs[:, 1]
    elif pruneidx_size < 0:  # not pruned: every bucket has its row
        bucket_row[:] = nwords + np.arange(bucket, dtype=np.int32)
    else:
        bucket_row[:] = -1
    (quant_input,) = r.take("<?")
    inp = _read_matrix(r, quant_input)
    input_rows = inp["dense"].astype(np.float32) if "dense" in inp else _decode_rows(inp)
    (qout,) = r.take("<?")
    out = _read_matrix(r, quant_input and qout)

    # the word table and each word's rows (Dictionary::initNgrams)
    word_offsets = np.zeros(nwords + 1, np.int64)
    word_offsets[1:] = np.cumsum([len(w) for w in words])
    word_bytes = np.frombuffer(b"".join(words), np.uint8).copy()
    eos_id = words.index(b"</s>") if b"</s>" in words else -1
    if fast:
        from pipeline.filters._lid_kernel import word_rows

        word_hash, sub_offsets, sub_rows = word_rows(
            word_bytes, word_offsets, eos_id, minn, maxn, bucket, bucket_row
        )
    else:
        word_hash, sub_offsets, sub_rows = _word_rows_reference(
            words, minn, maxn, bucket, bucket_row
        )
    tsize = 1 << max(4, (2 * nwords).bit_length())
    table = np.full(tsize, -1, np.int32)
    for i, h in enumerate(word_hash.tolist()):
        s = h & (tsize - 1)
        while table[s] != -1:
            s = (s + 1) & (tsize - 1)
        table[s] = i
    left, right = _build_tree(label_counts)
    bucket_bits, bucket_rank, rank_row = bucket_index(bucket_row)
    empty_f = np.zeros(0, np.float32)
    return LidModel(
        dim=dim,
        minn=minn,
        maxn=maxn,
        bucket=bucket,
        nwords=nwords,
        labels=label_names,
        input_rows=np.ascontiguousarray(input_rows),
        bucket_row=bucket_row,
        bucket_bits=bucket_bits,
        bucket_rank=bucket_rank,
        rank_row=rank_row,
        word_table=table,
        word_hash=word_hash,
        word_bytes=word_bytes,
        word_offsets=word_offsets,
        sub_offsets=sub_offsets,
        sub_rows=sub_rows,
        eos_id=eos_id,
        out_kind=0 if "dense" in out else 1,
        out_dense=np.ascontiguousarray(out["dense"], np.float32)
        if "dense" in out
        else empty_f.reshape(0, dim),
        out_codes=out.get("codes", np.zeros((0, 1), np.uint8)),
        out_centroids=out.get("centroids", empty_f),
        out_norms=out.get("norms", empty_f),
        out_nsubq=int(out.get("nsubq", 0)),
        out_dsub=int(out.get("dsub", 0)),
        out_lastdsub=int(out.get("lastdsub", 0)),
        tree_left=left,
        tree_right=right,
    )
