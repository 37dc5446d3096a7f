"""numba kernel for ``lid.fasttext``: fastText's supervised ``predict`` (k=1) over the UTF-8 buffer
of an Arrow string column, with no Python string per row.

It does what fastText 0.9's C++ does for ``model.predict(text.replace("\\n", " "), k=1)``
(datatrove's ``FT176LID``), in the same order of float32 operations, so labels and scores are
fastText's own:

- tokens: runs of bytes other than space, ``\\n``, ``\\r``, ``\\t``, ``\\v``, ``\\f``, NUL
  (``Dictionary::readWord``); a ``</s>`` token ends the line (``getLine``), tokens starting with
  ``__label__`` are labels and skipped; the line ends with ``</s>``;
- each word adds its own row and its character 2–4-gram rows (FNV-1a with sign-extended bytes,
  ``% bucket``, through the pruned-bucket index), an out-of-vocabulary word its n-gram rows;
- the hidden vector is their float32 sum times ``float(1.0 / n)``; the label is the
  hierarchical-softmax DFS with fastText's pruning and tie rule (a later leaf with an equal
  score wins), and the score ``expf`` of its log-probability.

Imports numba at import time: import it lazily (``FastTextLidStage`` does).
"""

from __future__ import annotations

import math

import numpy as np

from pipeline._numba_cache import numba_with_cache

nb = numba_with_cache()

_FNV_OFFSET = 2166136261  # hashes are kept in int64 and masked to 32 bits at each step
_FNV_PRIME = 16777619
_LABEL = np.frombuffer(b"__label__", np.uint8)
_EOS = np.frombuffer(b"</s>", np.uint8)


@nb.njit(cache=True, inline="always")
def _is_space(c):  # type: ignore[no-untyped-def]
    return c == 32 or c == 10 or c == 13 or c == 9 or c == 11 or c == 12 or c == 0


@nb.njit(cache=True, inline="always")
def _fnv(h, c):  # type: ignore[no-untyped-def]
    x = np.int64(c) if c < 0x80 else (np.int64(c) | 0xFFFFFF00)
    return ((h ^ x) * _FNV_PRIME) & 0xFFFFFFFF


@nb.njit(cache=True, inline="always")
def _add_row(hidden, rows, r):  # type: ignore[no-untyped-def]
    for k in range(hidden.shape[0]):
        hidden[k] += rows[r, k]


@nb.njit(cache=True)
def _word_byte(data, p, wlen, k):  # type: ignore[no-untyped-def]
    """Byte ``k`` of ``"<" + token + ">"`` where the token is ``data[p : p + wlen - 2]``."""
    if k == 0:
        return np.uint8(60)  # "<"
    if k == wlen - 1:
        return np.uint8(62)  # ">"
    return data[p + k - 1]


@nb.njit(cache=True, inline="always")
def _popcount(x):  # type: ignore[no-untyped-def]
    """Set bits of a uint64 (SWAR)."""
    x = x - ((x >> np.uint64(1)) & np.uint64(0x5555555555555555))
    x = (x & np.uint64(0x3333333333333333)) + ((x >> np.uint64(2)) & np.uint64(0x3333333333333333))
    x = (x + (x >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return (x * np.uint64(0x0101010101010101)) >> np.uint64(56)


@nb.njit(cache=True, inline="always")
def _mod(h, d, inv_d):  # type: ignore[no-untyped-def]
    """``h % d`` for 0 <= h < 2**32 and d > 0 (``inv_d = 1.0 / d``) by a float64 multiply and one
    correction step: the quotient is off by at most one, and an integer division costs ~4x more."""
    q = np.int64(np.float64(h) * inv_d)
    r = h - q * d
    if r < 0:
        r += d
    elif r >= d:
        r -= d
    return r


@nb.njit(cache=True, inline="always")
def _bucket_row(b, bucket_bits, bucket_rank, rank_row):  # type: ignore[no-untyped-def]
    """``bucket_row[b]`` from the compact index (-1: pruned); see ``_lid_model.LidModel``."""
    w = b >> 6
    word = bucket_bits[w]
    bit = np.uint64(b & 63)
    if not ((word >> bit) & np.uint64(1)):
        return -1
    below = word & ((np.uint64(1) << bit) - np.uint64(1))
    return rank_row[bucket_rank[w] + np.int64(_popcount(below))]


@nb.njit(cache=True)
def _add_subwords(data, p, q, minn, maxn, bucket, inv_bucket, bucket_bits, bucket_rank, rank_row, rows, hidden):  # type: ignore[no-untyped-def]
    """``computeSubwords("<" + token + ">")`` for an out-of-vocabulary token; rows added.
    Most n-grams land in a pruned bucket (89% on whole real pages): the bit test answers them
    from a 250 KB array instead of an 8 MB one (the lookup was ~80% of the kernel's time)."""
    if bucket <= 0:  # no n-gram buckets (fastText trains maxn = 0 then)
        return 0
    wlen = q - p + 2
    added = 0
    for i in range(wlen):
        if (_word_byte(data, p, wlen, i) & 0xC0) == 0x80:
            continue
        h = np.int64(_FNV_OFFSET)
        j = i
        n = 1
        while j < wlen and n <= maxn:
            h = _fnv(h, _word_byte(data, p, wlen, j))
            j += 1
            while j < wlen and (_word_byte(data, p, wlen, j) & 0xC0) == 0x80:
                h = _fnv(h, _word_byte(data, p, wlen, j))
                j += 1
            if n >= minn and not (n == 1 and (i == 0 or j == wlen)):
                r = _bucket_row(_mod(h, bucket, inv_bucket), bucket_bits, bucket_rank, rank_row)
                if r >= 0:
                    _add_row(hidden, rows, r)
                    added += 1
            n += 1
    return added


@nb.njit(cache=True)
def _find_word(data, p, q, h, table, word_hash, word_bytes, word_offsets):  # type: ignore[no-untyped-def]
    mask = table.shape[0] - 1
    s = h & mask
    while True:
        wid = table[s]
        if wid < 0:
            return -1
        if word_hash[wid] == h and word_offsets[wid + 1] - word_offsets[wid] == q - p:
            a = word_offsets[wid]
            same = True
            for k in range(q - p):
                if word_bytes[a + k] != data[p + k]:
                    same = False
                    break
            if same:
                return wid
        s = (s + 1) & mask


@nb.njit(cache=True)
def _starts_with(data, p, q, pat):  # type: ignore[no-untyped-def]
    if q - p < pat.shape[0]:
        return False
    for k in range(pat.shape[0]):
        if data[p + k] != pat[k]:
            return False
    return True


@nb.njit(cache=True)
def _hs_predict(hidden, out_dense, tree_left, tree_right, nlabels):  # type: ignore[no-untyped-def]
    """``HierarchicalSoftmaxLoss::predict`` with k=1, threshold 0: (label, log-prob) or -1."""
    min_score = np.float32(math.log(np.float64(np.float32(0.0)) + 1e-5))
    stack_node = np.empty(2 * nlabels + 2, np.int64)
    stack_score = np.empty(2 * nlabels + 2, np.float32)
    top = 0
    stack_node[0] = 2 * nlabels - 2
    stack_score[0] = np.float32(0.0)
    top = 1
    best = -1
    best_score = np.float32(0.0)
    while top > 0:
        top -= 1
        node = stack_node[top]
        score = stack_score[top]
        if score < min_score:
            continue
        if best >= 0 and score < best_score:
            continue
        if tree_left[node] == -1 and tree_right[node] == -1:
            best = node  # pushed, then the smaller (the old one, on a tie) popped
            best_score = score
            continue
        d = np.float32(0.0)
        row = node - nlabels
        for j in range(hidden.shape[0]):
            d += out_dense[row, j] * hidden[j]
        e = np.float32(np.float32(1.0) + np.float32(math.exp(-d)))
        f = np.float32(1.0 / np.float64(e))
        log_right = np.float32(math.log(np.float64(np.float32(1.0 - np.float64(f))) + 1e-5))
        log_left = np.float32(math.log(np.float64(f) + 1e-5))
        # right pushed first so the left subtree is searched first, as fastText's recursion does
        stack_node[top] = tree_right[node]
        stack_score[top] = np.float32(score + log_left)
        top += 1
        stack_node[top] = tree_left[node]
        stack_score[top] = np.float32(score + log_right)
        top += 1
    return best, best_score


@nb.njit(cache=True)
def predict_batch(  # type: ignore[no-untyped-def]
    data,
    offsets,
    valid,
    max_chars,
    minn,
    maxn,
    bucket,
    bucket_bits,
    bucket_rank,
    rank_row,
    rows,
    table,
    word_hash,
    word_bytes,
    word_offsets,
    sub_offsets,
    sub_rows,
    eos_id,
    out_dense,
    tree_left,
    tree_right,
    out_label,
    out_score,
):
    """Label index (-1: no token) and probability for each row of an Arrow string column."""
    nlabels = tree_left.shape[0] // 2 + 1
    hidden = np.zeros(rows.shape[1], np.float32)
    inv_bucket = 1.0 / bucket if bucket > 0 else 0.0  # no n-gram buckets: minn/maxn are 0 too
    for d in range(offsets.shape[0] - 1):
        out_label[d] = -1
        out_score[d] = np.float32(0.0)
        if not valid[d]:
            continue
        s = offsets[d]
        e = offsets[d + 1]
        if max_chars >= 0:
            chars = 0
            p = s
            while p < e:
                if (data[p] & 0xC0) != 0x80:
                    if chars == max_chars:
                        break
                    chars += 1
                p += 1
            e = p
        hidden[:] = np.float32(0.0)
        n = 0
        words = 0
        eos = False
        p = s
        while p < e:
            while p < e and _is_space(data[p]):
                p += 1
            if p >= e:
                break
            q = p
            h = np.int64(_FNV_OFFSET)
            while q < e and not _is_space(data[q]):
                h = _fnv(h, data[q])
                q += 1
            if not _starts_with(data, p, q, _LABEL):
                words += 1
                if q - p == 4 and _starts_with(data, p, q, _EOS):
                    eos = True
                    break
                wid = _find_word(data, p, q, h, table, word_hash, word_bytes, word_offsets)
                if wid >= 0:
                    for k in range(sub_offsets[wid], sub_offsets[wid + 1]):
                        _add_row(hidden, rows, sub_rows[k])
                    n += sub_offsets[wid + 1] - sub_offsets[wid]
                else:
                    n += _add_subwords(data, p, q, minn, maxn, bucket, inv_bucket, bucket_bits, bucket_rank, rank_row, rows, hidden)
            p = q
        if words == 0 and not eos:
            continue  # nothing but whitespace (or labels): "und"
        if eos_id >= 0:  # the "</s>" that ends every line (or the one that ended it early)
            _add_row(hidden, rows, eos_id)
            n += 1
        if n == 0:
            continue
        scale = np.float32(1.0 / np.float64(n))
        for k in range(hidden.shape[0]):
            hidden[k] = hidden[k] * scale
        best, best_score = _hs_predict(hidden, out_dense, tree_left, tree_right, nlabels)
        if best >= 0:
            out_label[d] = best
            out_score[d] = np.float32(math.exp(best_score))


@nb.njit(cache=True)
def word_rows(word_bytes, word_offsets, eos_id, minn, maxn, bucket, bucket_row):  # type: ignore[no-untyped-def]
    """``Dictionary::initNgrams``: each word's hash and rows (itself, then its n-grams' kept
    rows), as (hashes, CSR offsets, rows)."""
    nwords = word_offsets.shape[0] - 1
    hashes = np.zeros(nwords, np.uint32)
    offsets = np.zeros(nwords + 1, np.int64)
    cap = 16 * nwords + 16
    rows = np.empty(cap, np.int32)
    n = 0
    for w in range(nwords):
        p = word_offsets[w]
        q = word_offsets[w + 1]
        h = np.int64(_FNV_OFFSET)
        for k in range(p, q):
            h = _fnv(h, word_bytes[k])
        hashes[w] = np.uint32(h)
        if n + 1 + 3 * (q - p + 2) > cap:
            bigger = np.empty(2 * cap + 3 * (q - p + 2), np.int32)
            bigger[:n] = rows[:n]
            rows = bigger
            cap = bigger.shape[0]
        rows[n] = w
        n += 1
        if w != eos_id:
            n = _subword_rows(word_bytes, p, q, minn, maxn, bucket, bucket_row, rows, n)
        offsets[w + 1] = n
    return hashes, offsets, rows[:n].copy()


@nb.njit(cache=True)
def _subword_rows(data, p, q, minn, maxn, bucket, bucket_row, rows, n):  # type: ignore[no-untyped-def]
    """The kept rows of ``computeSubwords("<" + token + ">")``, appended to ``rows`` at ``n``."""
    wlen = q - p + 2
    for i in range(wlen):
        if (_word_byte(data, p, wlen, i) & 0xC0) == 0x80:
            continue
        h = np.int64(_FNV_OFFSET)
        j = i
        k = 1
        while j < wlen and k <= maxn:
            h = _fnv(h, _word_byte(data, p, wlen, j))
            j += 1
            while j < wlen and (_word_byte(data, p, wlen, j) & 0xC0) == 0x80:
                h = _fnv(h, _word_byte(data, p, wlen, j))
                j += 1
            if k >= minn and not (k == 1 and (i == 0 or j == wlen)):
                r = bucket_row[h % bucket]
                if r >= 0:
                    rows[n] = r
                    n += 1
            k += 1
    return n
