"""All numba kernels of the dedup package, at module level so numba's on-disk cache works.

Numba cannot reuse cached machine code for jitted functions defined inside other functions
(closures): every process compiled them again (5-10 s) and the cache grew each time. Kept
here, each kernel compiles once per machine and later processes load it in well under a second.

This module imports numba at import time: import it lazily (``dedup.signature._kernels()``
does), never from a module the registry loads.
"""

from __future__ import annotations

import numpy as np

from dedup.signature import FNV_OFFSET, FNV_PRIME
from pipeline._numba_cache import numba_with_cache

nb = numba_with_cache()  # the cache dir is set before numba reads its config

u64 = np.uint64

# ---------------------------------------------------------------- signatures (signature.py)


@nb.njit(cache=True, inline="always")
def fmix64(h):  # type: ignore[no-untyped-def]
    h ^= h >> u64(33)
    h *= u64(0xFF51AFD7ED558CCD)
    h ^= h >> u64(33)
    h *= u64(0xC4CEB9FE1A85EC53)
    h ^= h >> u64(33)
    return h


@nb.njit(cache=True, inline="always")
def _scan_from(data, start, end, wh, table, n, h, inword):  # type: ignore[no-untyped-def]
    # Branch-free scan (1.6x faster than branching at word ends: no mispredictions):
    # the running FNV state is stored at wh[n] every byte, n advances at a word's end.
    # Returns the state (n, h, inword) after data[start:end].
    for p in range(start, end):
        c = table[data[p]]
        isw = 1 if c != 0 else 0
        wh[n] = h
        n += inword & (1 - isw)
        h = (h ^ u64(c)) * u64(FNV_PRIME) if isw else u64(FNV_OFFSET)
        inword = isw
    return n, h, inword


@nb.njit(cache=True, inline="always")
def _scan_words(data, start, end, wh, table):  # type: ignore[no-untyped-def]
    n, h, inword = _scan_from(data, start, end, wh, table, 0, u64(FNV_OFFSET), 0)
    wh[n] = h
    n += inword
    return n


@nb.njit(cache=True)
def doc_word_hashes(data, start, end, wh, table):  # type: ignore[no-untyped-def]
    # FNV-1a is one serial multiply chain per byte; a document long enough is cut at a
    # separator byte near its middle and both halves are scanned in one loop, two independent
    # chains the CPU overlaps (1.25x on 1.2 KB docs). Words never straddle the cut, so the
    # word hashes are the same as one scan's. The second half is scanned into wh's upper half
    # and moved down after the first.
    ln = end - start
    half = wh.shape[0] // 2
    if ln < 64 or ln // 2 + 2 > half:
        n = _scan_words(data, start, end, wh, table)
    else:
        mid = start + ln // 2
        while mid < end and table[data[mid]] != 0:
            mid += 1
        h1 = u64(FNV_OFFSET)
        h2 = u64(FNV_OFFSET)
        in1 = 0
        in2 = 0
        n1 = 0
        n2 = half
        l1 = mid - start
        l2 = end - mid
        lmin = l1 if l1 < l2 else l2
        for i in range(lmin):
            c1 = table[data[start + i]]
            c2 = table[data[mid + i]]
            w1 = 1 if c1 != 0 else 0
            w2 = 1 if c2 != 0 else 0
            wh[n1] = h1
            wh[n2] = h2
            n1 += in1 & (1 - w1)
            n2 += in2 & (1 - w2)
            h1 = (h1 ^ u64(c1)) * u64(FNV_PRIME) if w1 else u64(FNV_OFFSET)
            h2 = (h2 ^ u64(c2)) * u64(FNV_PRIME) if w2 else u64(FNV_OFFSET)
            in1 = w1
            in2 = w2
        # the longer half's tail, one chain
        n1, h1, in1 = _scan_from(data, start + lmin, start + l1, wh, table, n1, h1, in1)
        n2, h2, in2 = _scan_from(data, mid + lmin, mid + l2, wh, table, n2, h2, in2)
        wh[n1] = h1
        n1 += in1
        wh[n2] = h2
        n2 += in2
        for k in range(n2 - half):
            wh[n1 + k] = wh[half + k]
        n = n1 + n2 - half
    for i in range(n):
        wh[i] = fmix64(wh[i])
    return n


@nb.njit(cache=True)
def shingles_of(wh, nw, ngram, sh):  # type: ignore[no-untyped-def]
    if nw == 0:
        return 0
    k = ngram if nw >= ngram else nw
    m = nw - k + 1
    for j in range(m):
        h = u64(FNV_OFFSET)
        for i in range(k):
            h = (h ^ wh[j + i]) * u64(FNV_PRIME)
        sh[j] = fmix64(h)
    return m


@nb.njit(cache=True)
def minhash_into(sh, m, a, b, sig):  # type: ignore[no-untyped-def]
    # permutation-outer: each permutation is one min-reduction over the doc's shingles, which
    # LLVM vectorises across shingles (8% faster than shingle-outer with an accumulator array)
    P = a.shape[0]
    if m == 0:
        for p in range(P):
            sig[p] = np.uint32(0xFFFFFFFF)
        return
    for p in range(P):
        ap = a[p]
        bp = b[p]
        acc = u64(0xFFFFFFFFFFFFFFFF)
        for j in range(m):
            acc = min(acc, ap * sh[j] + bp)
        sig[p] = np.uint32(acc >> u64(32))


@nb.njit(cache=True, inline="always")
def radix_sort(a, b, m, cnt):  # type: ignore[no-untyped-def]
    # LSD radix sort of a[:m] (uint32), four 8-bit passes through scratch b; an even number
    # of passes leaves the result in a. 2.3x faster than numba's quicksort at ~200 items.
    for shift in range(0, 32, 8):
        cnt[:] = 0
        for i in range(m):
            cnt[(a[i] >> shift) & 255] += 1
        tot = 0
        for k in range(256):
            c = cnt[k]
            cnt[k] = tot
            tot += c
        for i in range(m):
            v = a[i]
            k = (v >> shift) & 255
            b[cnt[k]] = v
            cnt[k] += 1
        a, b = b, a


@nb.njit(cache=True, inline="always")
def _max_doc_len(offsets):  # type: ignore[no-untyped-def]
    maxlen = 1
    for d in range(offsets.shape[0] - 1):
        ln = offsets[d + 1] - offsets[d]
        if ln > maxlen:
            maxlen = ln
    return maxlen


@nb.njit(cache=True, inline="always")
def _grown(flat, pos, cap):  # type: ignore[no-untyped-def]
    # a copy of flat[:pos] in a new array of cap items (same dtype)
    out = np.empty(cap, dtype=flat.dtype)
    out[:pos] = flat[:pos]
    return out


@nb.njit(cache=True)
def signatures(data, offsets, table, a, b, ngram, sig):  # type: ignore[no-untyped-def]
    n_docs = offsets.shape[0] - 1
    maxlen = _max_doc_len(offsets)
    wh = np.empty(maxlen + 4, dtype=np.uint64)  # two halves: see doc_word_hashes
    sh = np.empty(maxlen // 2 + 2, dtype=np.uint64)
    for d in range(n_docs):
        nw = doc_word_hashes(data, offsets[d], offsets[d + 1], wh, table)
        m = shingles_of(wh, nw, ngram, sh)
        minhash_into(sh, m, a, b, sig[d])


@nb.njit(cache=True)
def signatures_and_sets(data, offsets, table, a, b, ngram, sig, set_offsets):  # type: ignore[no-untyped-def]
    n_docs = offsets.shape[0] - 1
    maxlen = _max_doc_len(offsets)
    wh = np.empty(maxlen + 4, dtype=np.uint64)  # two halves: see doc_word_hashes
    sh = np.empty(maxlen // 2 + 2, dtype=np.uint64)
    top = np.empty(maxlen // 2 + 2, dtype=np.uint32)
    scratch = np.empty(maxlen // 2 + 2, dtype=np.uint32)
    counts = np.empty(256, dtype=np.int64)
    # English runs ~6 bytes per word: start there and grow, rather than reserving the
    # bytes/2 worst case (which page-faults ~3x the memory actually used)
    cap = max(1024, (offsets[n_docs] - offsets[0]) // 5)
    flat = np.empty(cap, dtype=np.uint32)
    pos = 0
    set_offsets[0] = 0
    for d in range(n_docs):
        nw = doc_word_hashes(data, offsets[d], offsets[d + 1], wh, table)
        m = shingles_of(wh, nw, ngram, sh)
        minhash_into(sh, m, a, b, sig[d])
        if m > 0:
            if pos + m > cap:
                cap = max(2 * cap, pos + m)
                flat = _grown(flat, pos, cap)
            for j in range(m):
                top[j] = np.uint32(sh[j] >> u64(32))
            radix_sort(top, scratch, m, counts)
            flat[pos] = top[0]
            pos += 1
            for j in range(1, m):
                if top[j] != top[j - 1]:
                    flat[pos] = top[j]
                    pos += 1
        set_offsets[d + 1] = pos
    return flat[:pos]


@nb.njit(cache=True, inline="always")
def jaccard(fa, oa, i, fb, ob, j):  # type: ignore[no-untyped-def]
    p = oa[i]
    pe = oa[i + 1]
    q = ob[j]
    qe = ob[j + 1]
    na = pe - p
    nb_ = qe - q
    if na == 0 or nb_ == 0:
        return 0.0
    inter = 0
    while p < pe and q < qe:
        x = fa[p]
        y = fb[q]
        if x == y:
            inter += 1
            p += 1
            q += 1
        elif x < y:
            p += 1
        else:
            q += 1
    return inter / (na + nb_ - inter)


@nb.njit(cache=True)
def jaccard_pairs(flat, offs, left, right, out):  # type: ignore[no-untyped-def]
    for k in range(left.shape[0]):
        out[k] = jaccard(flat, offs, left[k], flat, offs, right[k])


@nb.njit(cache=True)
def word_ids(data, offsets, table, out_offsets):  # type: ignore[no-untyped-def]
    n_docs = offsets.shape[0] - 1
    maxlen = _max_doc_len(offsets)
    wh = np.empty(maxlen + 4, dtype=np.uint64)  # two halves: see doc_word_hashes
    total = 0
    for d in range(n_docs):
        total += (offsets[d + 1] - offsets[d]) // 2 + 1
    flat = np.empty(total, dtype=np.uint32)
    pos = 0
    out_offsets[0] = 0
    for d in range(n_docs):
        nw = doc_word_hashes(data, offsets[d], offsets[d + 1], wh, table)
        for i in range(nw):
            flat[pos] = np.uint32(wh[i] >> u64(32))
            pos += 1
        out_offsets[d + 1] = pos
    return flat[:pos].copy()


@nb.njit(cache=True)
def shingle_hashes(data, offsets, table, ngram, out_offsets):  # type: ignore[no-untyped-def]
    n_docs = offsets.shape[0] - 1
    maxlen = _max_doc_len(offsets)
    wh = np.empty(maxlen + 4, dtype=np.uint64)  # two halves: see doc_word_hashes
    cap = max(1024, (offsets[n_docs] - offsets[0]) // 5)
    flat = np.empty(cap, dtype=np.uint64)
    pos = 0
    out_offsets[0] = 0
    for d in range(n_docs):
        nw = doc_word_hashes(data, offsets[d], offsets[d + 1], wh, table)
        if pos + nw > cap:
            cap = max(2 * cap, pos + nw)
            flat = _grown(flat, pos, cap)
        m = shingles_of(wh, nw, ngram, flat[pos:])
        pos += m
        out_offsets[d + 1] = pos
    return flat[:pos]


# ---------------------------------------------------------------- LSH clustering (lsh.py)


@nb.njit(cache=True, inline="always")
def find(parent, x):  # type: ignore[no-untyped-def]
    root = x
    while parent[root] != root:
        root = parent[root]
    while parent[x] != root:
        nxt = parent[x]
        parent[x] = root
        x = nxt
    return root


@nb.njit(cache=True)
def try_pair(u, v, parent, n_new, fa, oa, fb, ob, threshold, verify, stats):  # type: ignore[no-untyped-def]
    # u < v; nodes >= n_new are documents of earlier snapshots (store b).
    if u >= n_new:
        return  # two earlier docs: already deduped in their own snapshot
    ru = find(parent, u)
    rv = find(parent, v)
    stats[0] += 1
    if ru == rv:
        return
    stats[1] += 1
    if verify:
        if v < n_new:
            j = jaccard(fa, oa, u, fa, oa, v)
        else:
            j = jaccard(fa, oa, u, fb, ob, v - n_new)
        if j < threshold:
            return
    stats[2] += 1
    if ru < rv:
        parent[rv] = ru
    else:
        parent[ru] = rv


@nb.njit(cache=True)
def process_band(
    nodes, keys, parent, n_new, fa, oa, fb, ob, threshold, verify, max_bucket, window, stats
):  # type: ignore[no-untyped-def]
    # A bucket of up to max_bucket nodes tries all its pairs; a larger one tries each node with
    # the bucket's first node and with the next `window` nodes (same order as all pairs: x, then y).
    n = nodes.shape[0]
    s = 0
    while s < n:
        e = s + 1
        while e < n and keys[e] == keys[s]:
            e += 1
        big = e - s > max_bucket
        for x in range(s, e):
            if big and x > s:
                try_pair(nodes[s], nodes[x], parent, n_new, fa, oa, fb, ob, threshold, verify, stats)
            ye = min(e, x + 1 + window) if big else e
            for y in range(x + 1, ye):
                try_pair(nodes[x], nodes[y], parent, n_new, fa, oa, fb, ob, threshold, verify, stats)
        s = e


@nb.njit(cache=True)
def roots(parent):  # type: ignore[no-untyped-def]
    out = np.empty(parent.shape[0], dtype=parent.dtype)
    for i in range(parent.shape[0]):
        out[i] = find(parent, i)
    return out


# ---------------------------------------------------------------- SoftDedup (softdedup.py)


@nb.njit(cache=True, inline="always")
def gram_hash(words, j, n):  # type: ignore[no-untyped-def]
    h = u64(0xCBF29CE484222325)
    for i in range(n):
        h = (h ^ u64(words[j + i])) * u64(0x100000001B3)
    return fmix64(h)


@nb.njit(cache=True, inline="always")
def row_index(h, r, mask):  # type: ignore[no-untyped-def]
    # rows use independent 21-bit-rotated slices of one 64-bit hash
    x = (h >> u64((r * 21) % 64)) | (h << u64((64 - (r * 21) % 64) % 64))
    x ^= x >> u64(29)
    x *= u64(0xBF58476D1CE4E5B9)
    x ^= x >> u64(32)
    return x & mask


# Counters touched per block. A sketch (128 MB by default) is far larger than the caches, so
# each counter read is a DRAM miss (~100 ns). Computed inline, a gram's hash (~30 instructions)
# fills the CPU's reorder window and only ~2-3 misses are in flight; with a block's counter
# indices computed first, the loop that touches them is a few instructions per counter and the
# misses overlap. On the 168k-doc bench corpus (35M grams, one process): count 6.0 -> 2.2 CPU-s,
# score 8.0 -> 3.3, and two such kernels running at once on 2 cores slow each other far less
# (count +2.1 -> +0.5 CPU-s). Same counters, same bits: increments commute (each is +1,
# saturating), and each doc's log counts are still summed in gram order.
_BLOCK = 256


@nb.njit(cache=True, inline="always")
def _gram_counters(words, start, b, n, depth, width, mask, idx):  # type: ignore[no-untyped-def]
    # flat indices (row * width + column) of grams start .. start+b-1, row-major per gram
    for q in range(b):
        h = gram_hash(words, start + q, n)
        for r in range(depth):
            idx[q * depth + r] = r * width + np.int64(row_index(h, r, mask))


@nb.njit(cache=True)
def count(words, offsets, n, table):  # type: ignore[no-untyped-def]
    depth = table.shape[0]
    width = table.shape[1]
    mask = u64(width - 1)
    flat = table.reshape(-1)
    idx = np.empty(_BLOCK * depth, dtype=np.int64)
    total = 0
    for d in range(offsets.shape[0] - 1):
        s = offsets[d]
        m = offsets[d + 1] - s - n + 1
        j0 = 0
        while j0 < m:
            b = min(_BLOCK, m - j0)
            _gram_counters(words, s + j0, b, n, depth, width, mask, idx)
            for q in range(b * depth):
                i = idx[q]
                if flat[i] < 0xFFFFFFFF:
                    flat[i] += 1
            j0 += b
        total += max(m, 0)
    return total


@nb.njit(cache=True)
def mean_log_count(words, offsets, n, table, k, out, grams):  # type: ignore[no-untyped-def]
    depth = table.shape[0]
    width = table.shape[1]
    mask = u64(width - 1)
    flat = table.reshape(-1)
    idx = np.empty(_BLOCK * depth, dtype=np.int64)
    cnt = np.empty(_BLOCK, dtype=np.uint32)
    for d in range(offsets.shape[0] - 1):
        s = offsets[d]
        m = offsets[d + 1] - s - n + 1
        acc = 0.0
        j0 = 0
        while j0 < m:
            b = min(_BLOCK, m - j0)
            _gram_counters(words, s + j0, b, n, depth, width, mask, idx)
            for q in range(b):
                c = flat[idx[q * depth]]
                for r in range(1, depth):
                    c2 = flat[idx[q * depth + r]]
                    if c2 < c:
                        c = c2
                cnt[q] = c
            for q in range(b):
                acc += np.log(cnt[q] + k)
            j0 += b
        grams[d] = max(m, 0)
        out[d] = acc / m if m > 0 else np.nan


# ---------------------------------------------------------------- ground truth (evaluate.py)


@nb.njit(cache=True)
def group_pairs(tokens, docs, sizes, threshold):  # type: ignore[no-untyped-def]
    n = tokens.shape[0]
    cap = 1024
    left = np.empty(cap, dtype=np.int64)
    right = np.empty(cap, dtype=np.int64)
    k = 0
    s = 0
    while s < n:
        e = s + 1
        while e < n and tokens[e] == tokens[s]:
            e += 1
        for x in range(s, e):
            for y in range(x + 1, e):
                a = docs[x]
                b = docs[y]
                if a == b:
                    continue
                sa = sizes[a]
                sb = sizes[b]
                if min(sa, sb) < threshold * max(sa, sb):
                    continue
                if k == cap:
                    cap *= 2
                    left2 = np.empty(cap, dtype=np.int64)
                    right2 = np.empty(cap, dtype=np.int64)
                    left2[:k] = left[:k]
                    right2[:k] = right[:k]
                    left = left2
                    right = right2
                left[k] = min(a, b)
                right[k] = max(a, b)
                k += 1
        s = e
    return left[:k], right[:k]
