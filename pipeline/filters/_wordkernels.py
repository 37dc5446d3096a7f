"""numba kernels behind :mod:`pipeline.filters.words`' batch splitter and the Gopher rules.

Imports numba at import time: import it lazily (``pipeline.filters.words.BatchWords`` does).

``chunk_bounds`` and ``split_chunks`` walk the UTF-8 buffer of an Arrow string column, cuts it into ``str.split()``
chunks and runs spaCy's English tokenizer algorithm (the same loop as
``EnglishWordSplitter.split_chunk``) on every chunk that is printable ASCII, with the ASCII
part of spaCy's prefix/suffix/infix rules written out below (``tests/pipeline/
test_filters_words.py`` checks them against the regexes on every distinct chunk of real text
and on exhaustive short strings). A chunk with non-ASCII characters is split as the
same chunk written in ASCII stand-ins that spaCy's affix rules cannot tell from them
(``words.nonascii_reps``: accented and Cyrillic letters, curly quotes, guillemets, ``¶``, CJK
punctuation such as ``，``). It does not decide anything it cannot decide exactly: a chunk
with a control byte or a character without a stand-in (``—``, ``…``, CJK letters beside
punctuation), a non-ASCII core the URL rule would be tried on, a string that might be a special case (its 64-bit hash is in
``special``), a core with a ``.`` (spaCy's URL and dot-infix rules), or tokens that might start a
special-case re-merge (``merge_pairs``) are handed back as one *fallback* token, which Python
splits with the reference splitter and its cache.

Token identity: FNV-1a 64 over the token's bytes, mixed (splitmix64 finaliser).
"""

from __future__ import annotations

import numpy as np

from pipeline._numba_cache import numba_with_cache

# the tables and constants (numpy only: importable without numba, for the AOT-compiled copies)
from pipeline.filters._wordtables import (  # noqa: F401 - re-exported, read by the kernels
    _FNV_OFF,
    _FNV_PRIME,
    C_ALPHA,
    C_DIGIT,
    C_UPPER,
    C_PREFIX1,
    C_SUFFIX1,
    C_DOT_LB,
    C_INFIX_COLON,
    C_QUOTE,
    UNITS,
    CURRENCIES,
    CACHE_SLOTS,
    char_table,
    packed,
)

nb = numba_with_cache()


@nb.njit(cache=True, inline="always")
def _mix(h):  # type: ignore[no-untyped-def]
    h ^= h >> np.uint64(30)
    h *= np.uint64(0xBF58476D1CE4E5B9)
    h ^= h >> np.uint64(27)
    h *= np.uint64(0x94D049BB133111EB)
    h ^= h >> np.uint64(31)
    return h


@nb.njit(cache=True)
def hash_bytes(data, a, b):  # type: ignore[no-untyped-def]
    h = _FNV_OFF
    for i in range(a, b):
        h ^= np.uint64(data[i])
        h *= _FNV_PRIME
    return _mix(h)


@nb.njit(cache=True, inline="always")
def pair_hash(h1, h2):  # type: ignore[no-untyped-def]
    return _mix(h1 * np.uint64(0x9E3779B97F4A7C15) + h2)


@nb.njit(cache=True)
def hash_strings(data, offs):  # type: ignore[no-untyped-def]
    out = np.empty(offs.shape[0] - 1, dtype=np.uint64)
    for i in range(out.shape[0]):
        out[i] = hash_bytes(data, offs[i], offs[i + 1])
    return out


@nb.njit(cache=True, inline="always")
def _in_sorted(arr, h):  # type: ignore[no-untyped-def]
    lo = 0
    hi = arr.shape[0]
    while lo < hi:
        mid = (lo + hi) >> 1
        if arr[mid] < h:
            lo = mid + 1
        else:
            hi = mid
    return lo < arr.shape[0] and arr[lo] == h


@nb.njit(cache=True, inline="always")
def _is_special(data, a, b, special, fl):  # type: ignore[no-untyped-def]
    """Might data[a:b] be a special case? ``special[0] >> 32`` is the longest key's length in
    bytes, the rest are the keys' sorted hashes; bit ``min(len, 31)`` (a byte length from 1)
    of ``fl[first byte * 256 + last byte]`` says whether some key has those end bytes and that
    length."""
    if b - a > np.int64(special[0] >> np.uint64(32)) or b <= a:
        return False
    ln = min(b - a, 31)
    if not ((fl[np.int64(data[a]) * 256 + np.int64(data[b - 1])] >> np.uint32(ln)) & np.uint32(1)):
        return False
    h = hash_bytes(data, a, b)
    lo = 1
    hi = special.shape[0]
    while lo < hi:
        mid = (lo + hi) >> 1
        if special[mid] < h:
            lo = mid + 1
        else:
            hi = mid
    return lo < special.shape[0] and special[lo] == h


@nb.njit(cache=True)
def _ends_with(data, a, b, ub, uo, k):  # type: ignore[no-untyped-def]
    n = uo[k + 1] - uo[k]
    if b - a < n:
        return False
    for j in range(n):
        if data[b - n + j] != ub[uo[k] + j]:
            return False
    return True


@nb.njit(cache=True)
def _find_prefix(data, a, b, ct):  # type: ignore[no-untyped-def]
    c = data[a]
    if c == 0x2E:  # "..+"
        j = a
        while j < b and data[j] == 0x2E:
            j += 1
        return j - a if j - a >= 2 else 0
    if c == 0x2B:  # "+" not before a digit
        if a + 1 < b and (ct[data[a + 1]] & C_DIGIT):
            return 0
        return 1
    if ct[c] & C_PREFIX1:
        return 1
    if c == 0x55 and b - a >= 3 and data[a + 1] == 0x53 and data[a + 2] == 0x24:  # US$
        return 3
    if (c == 0x43 or c == 0x41) and b - a >= 2 and data[a + 1] == 0x24:  # C$ A$
        return 2
    return 0


@nb.njit(cache=True)
def _find_suffix(data, a, b, ct, ub, uo, cb, co):  # type: ignore[no-untyped-def]
    """Length of spaCy's suffix match of data[a:b] (leftmost start among rules ending at b)."""
    if b <= a:
        return 0
    last = data[b - 1]
    if last == 0x2E:
        j = b
        while j > a and data[j - 1] == 0x2E:
            j -= 1
        r = b - j
        if r >= 2:
            return r
        if b - 2 >= a and (ct[data[b - 2]] & C_DOT_LB):
            return 1
        if b - 3 >= a and (ct[data[b - 2]] & C_UPPER) and (ct[data[b - 3]] & C_UPPER):
            return 1
        return 0
    best = b
    # units (at most 4 characters) and currencies (3) need a digit before them
    digit = False
    for i in range(max(a, b - 5), b - 1):
        if ct[data[i]] & C_DIGIT:
            digit = True
    for k in range(uo.shape[0] - 1 if digit else 0):
        n = uo[k + 1] - uo[k]
        p = b - n
        if (
            p < best
            and p - 1 >= a
            and _ends_with(data, a, b, ub, uo, k)
            and (ct[data[p - 1]] & C_DIGIT)
        ):
            best = p
    for k in range(co.shape[0] - 1 if digit else 0):
        n = co[k + 1] - co[k]
        p = b - n
        if (
            p < best
            and p - 1 >= a
            and _ends_with(data, a, b, cb, co, k)
            and (ct[data[p - 1]] & C_DIGIT)
        ):
            best = p
    if last == 0x2B and b - 2 >= a and (ct[data[b - 2]] & C_DIGIT):  # (?<=[0-9])\+
        if b - 1 < best:
            best = b - 1
    if (last == 0x73 or last == 0x53) and b - 2 >= a and data[b - 2] == 0x27:  # 's 'S
        if b - 2 < best:
            best = b - 2
    if ct[last] & C_SUFFIX1:
        if b - 1 < best:
            best = b - 1
    return b - best


@nb.njit(cache=True)
def _infix_split(data, a, b, ct, out_s, out_e, n):  # type: ignore[no-untyped-def]
    """spaCy's infix split of data[a:b], tokens appended at out[n:]; new n."""
    start = a
    p = a
    while p < b:
        c = data[p]
        e = -1
        if c == 0x2E and p + 1 < b and data[p + 1] == 0x2E:  # \.\.+ (ignored at the start)
            e = p + 2
            while e < b and data[e] == 0x2E:
                e += 1
            if p == a:
                p = e
                continue
        elif c == 0x2E:  # (?<=[a-z"',`])\.(?=[A-Z"',`])
            if (
                p > a
                and p + 1 < b
                and (ct[data[p - 1]] & C_QUOTE or 0x61 <= data[p - 1] <= 0x7A)
                and (ct[data[p + 1]] & C_QUOTE or 0x41 <= data[p + 1] <= 0x5A)
            ):
                e = p + 1
        elif p > a:
            prev = ct[data[p - 1]]
            nxt = ct[data[p + 1]] if p + 1 < b else 0
            if (
                (c == 0x2B or c == 0x2D or c == 0x2A or c == 0x5E)
                and (prev & C_DIGIT)
                and ((nxt & C_DIGIT) or (p + 1 < b and data[p + 1] == 0x2D))
            ):
                e = p + 1
            elif c == 0x2C and (prev & C_ALPHA) and (nxt & C_ALPHA):
                e = p + 1
            elif (c == 0x2D or c == 0x7E) and (prev & (C_ALPHA | C_DIGIT)):
                if nxt & C_ALPHA:
                    e = p + 1
                elif c == 0x2D:
                    if p + 2 < b and data[p + 1] == 0x2D and (ct[data[p + 2]] & C_ALPHA):
                        e = p + 2
                    elif (
                        p + 3 < b
                        and data[p + 1] == 0x2D
                        and data[p + 2] == 0x2D
                        and (ct[data[p + 3]] & C_ALPHA)
                    ):
                        e = p + 3
            elif (ct[c] & C_INFIX_COLON) and (prev & (C_ALPHA | C_DIGIT)) and (nxt & C_ALPHA):
                e = p + 1
        if e < 0:
            p += 1
            continue
        if p != start:
            out_s[n] = start
            out_e[n] = p
            n += 1
        out_s[n] = p
        out_e[n] = e
        n += 1
        start = e
        p = e
    if start < b:
        out_s[n] = start
        out_e[n] = b
        n += 1
    return n


@nb.njit(cache=True)
def _is_lab(c):  # type: ignore[no-untyped-def]
    return (0x30 <= c <= 0x39) or (0x41 <= c <= 0x5A) or (0x61 <= c <= 0x7A)


@nb.njit(cache=True)
def _rest_ok(data, r, b):  # type: ignore[no-untyped-def]
    """``(?::\\d{2,5})?(?:[/?#]\\S*)?$`` at r."""
    if r == b:
        return True
    c = data[r]
    if c == 0x2F or c == 0x3F or c == 0x23:
        return True
    if c != 0x3A:
        return False
    j = r + 1
    while j < b and 0x30 <= data[j] <= 0x39:
        j += 1
    if not (2 <= j - r - 1 <= 5):
        return False
    return j == b or data[j] == 0x2F or data[j] == 0x3F or data[j] == 0x23


@nb.njit(cache=True)
def _domain_ok(data, hs, b):  # type: ignore[no-untyped-def]
    """``(?:label\\.)+tld`` then the rest, from hs (ASCII: labels [A-Za-z0-9][A-Za-z0-9_-]*
    up to 64 long, ending in [A-Za-z0-9]; tld [a-z]{2,63})."""
    p = hs
    while True:
        # one label, up to the next "."
        q = p
        while q < b and (_is_lab(data[q]) or data[q] == 0x5F or data[q] == 0x2D):
            q += 1
        if q >= b or data[q] != 0x2E or q == p or q - p > 64:
            return False
        if not (_is_lab(data[p]) and _is_lab(data[q - 1])):
            return False
        # a tld after this dot?
        t = q + 1
        while t < b and 0x61 <= data[t] <= 0x7A:
            t += 1
        if 2 <= t - q - 1 <= 63 and _rest_ok(data, t, b):
            return True
        p = q + 1


@nb.njit(cache=True)
def _digits(data, p, b):  # type: ignore[no-untyped-def]
    q = p
    while q < b and 0x30 <= data[q] <= 0x39:
        q += 1
    return q


@nb.njit(cache=True)
def _octet_ok(data, p, q, kind):  # type: ignore[no-untyped-def]
    """kind 0: first octet ([1-9]\\d?|1\\d\\d|2[01]\\d|22[0-3]); 1: middle
    (1?\\d{1,2}|2[0-4]\\d|25[0-5]); 2: last ([1-9]\\d?|1\\d\\d|2[0-4]\\d|25[0-4])."""
    n = q - p
    if n < 1 or n > 3:
        return False
    c0 = data[p]
    if n == 1:
        return kind == 1 or c0 != 0x30
    if n == 2:
        return kind == 1 or c0 != 0x30
    c1 = data[p + 1]
    c2 = data[p + 2]
    if c0 == 0x31:
        return True
    if c0 != 0x32:
        return False
    if kind == 0:
        return c1 <= 0x31 or (c1 == 0x32 and c2 <= 0x33)
    if c1 <= 0x34:
        return True
    return c1 == 0x35 and c2 <= (0x35 if kind == 1 else 0x34)


@nb.njit(cache=True)
def _dotted_tail(data, p, b, groups):  # type: ignore[no-untyped-def]
    """``(?:\\.\\d{1,3}){groups}`` matches at p (a lookahead: nothing needs to follow)."""
    for g in range(groups):
        if p >= b or data[p] != 0x2E:
            return False
        q = _digits(data, p + 1, b)
        if q == p + 1:
            return False
        if g < groups - 1 and q - p - 1 > 3:
            return False
        p = q
    return True


@nb.njit(cache=True)
def _starts(data, p, b, lit):  # type: ignore[no-untyped-def]
    if b - p < lit.shape[0]:
        return False
    for i in range(lit.shape[0]):
        if data[p + i] != lit[i]:
            return False
    return True


_L10 = np.frombuffer(b"10", dtype=np.uint8)
_L127 = np.frombuffer(b"127", dtype=np.uint8)
_L169 = np.frombuffer(b"169.254", dtype=np.uint8)
_L192 = np.frombuffer(b"192.168", dtype=np.uint8)
_L172 = np.frombuffer(b"172.", dtype=np.uint8)


@nb.njit(cache=True)
def _ip_ok(data, hs, b):  # type: ignore[no-untyped-def]
    # spaCy's negative lookaheads: private and link-local ranges are not URLs
    if _starts(data, hs, b, _L10) and _dotted_tail(data, hs + 2, b, 3):
        return False
    if _starts(data, hs, b, _L127) and _dotted_tail(data, hs + 3, b, 3):
        return False
    if (_starts(data, hs, b, _L169) or _starts(data, hs, b, _L192)) and _dotted_tail(
        data, hs + 7, b, 2
    ):
        return False
    if _starts(data, hs, b, _L172) and hs + 6 <= b:
        c1 = data[hs + 4]
        c2 = data[hs + 5]
        second = (
            (c1 == 0x31 and 0x36 <= c2 <= 0x39)
            or (c1 == 0x32 and 0x30 <= c2 <= 0x39)
            or (c1 == 0x33 and 0x30 <= c2 <= 0x31)
        )
        if second and _dotted_tail(data, hs + 6, b, 2):
            return False
    p = hs
    for k in range(4):
        if k:
            if p >= b or data[p] != 0x2E:
                return False
            p += 1
        q = _digits(data, p, b)
        if not _octet_ok(data, p, q, 0 if k == 0 else (2 if k == 3 else 1)):
            return False
        p = q
    return _rest_ok(data, p, b)


@nb.njit(cache=True)
def _url_match(data, a, b):  # type: ignore[no-untyped-def]
    """spaCy's ``url_match`` on the printable-ASCII string data[a:b]: 1 match, 0 none,
    2 undecided (longer than 256 bytes: the caller asks Python)."""
    if b - a > 256:
        return 2
    bases = np.empty(2, dtype=np.int64)
    nb_ = 1
    bases[0] = a
    # scheme: [\\w+\\-.]{2,} then "://", which must end at the first ":"
    i = a
    while i < b and data[i] != 0x3A:
        c = data[i]
        if not (_is_lab(c) or c == 0x5F or c == 0x2B or c == 0x2D or c == 0x2E):
            break
        i += 1
    if i - a >= 2 and i + 2 < b and data[i] == 0x3A and data[i + 1] == 0x2F and data[i + 2] == 0x2F:
        bases[1] = i + 3
        nb_ = 2
    for k in range(nb_):
        base = bases[k]
        # the host starts at base, or after any "@" with at least one character before it
        hs = base
        while hs <= b:
            if hs == base or (hs - 1 > base and data[hs - 1] == 0x40):
                if hs < b and (_domain_ok(data, hs, b) or _ip_ok(data, hs, b)):
                    return 1
            hs += 1
    return 0


@nb.njit(cache=True)
def _maybe_url(data, a, b, ct):  # type: ignore[no-untyped-def]
    """False when spaCy's URL pattern cannot match data[a:b]: every match has a host ending in
    "." + two lowercase letters, or an IPv4 address (a digit, ".", a digit)."""
    for i in range(a, b - 1):
        if data[i] == 0x2E:
            if i + 2 < b and 0x61 <= data[i + 1] <= 0x7A and 0x61 <= data[i + 2] <= 0x7A:
                return True
            if i > a and (ct[data[i - 1]] & C_DIGIT) and (ct[data[i + 1]] & C_DIGIT):
                return True
    return False


@nb.njit(cache=True, inline="always")
def _merge_pair(data, s0, e0, s1, e1, fl, merge_pairs):  # type: ignore[no-untyped-def]
    """Might the tokens data[s0:e0], data[s1:e1] start a special-case re-merge? (bit 0 of
    ``fl``: some pair's first token has these end bytes)"""
    if fl[np.int64(data[s0]) * 256 + np.int64(data[e0 - 1])] & np.uint32(1):
        return _in_sorted(merge_pairs, pair_hash(hash_bytes(data, s0, e0), hash_bytes(data, s1, e1)))
    return False


@nb.njit(cache=True, inline="always")
def _special_at(data, orig, pm, mapped, a, b, special, fl):  # type: ignore[no-untyped-def]
    """:func:`_is_special` of data[a:b], on the original bytes when ``data`` holds stand-ins
    (``mapped``: position i of ``data`` is byte ``pm[i]`` of ``orig``)."""
    if mapped:
        return _is_special(orig, pm[a], pm[b], special, fl)
    return _is_special(data, a, b, special, fl)


@nb.njit(cache=True)
def _split_chunk(
    data, a0, b0, ct, special, fl, merge_pairs, ub, uo, cb, co, out_s, out_e, n, pre_cuts,
    suf_cuts, orig, pm, mapped,
):  # type: ignore[no-untyped-def]
    """Tokens of the chunk data[a0:b0] appended at out[n:]; returns the new n, or -1 to fall
    back to Python for this chunk.

    ``mapped``: ``data`` holds a non-ASCII chunk with each character written as its ASCII
    stand-in (:func:`split_chunks`); special cases and re-merges are looked up on the original
    bytes (``orig[pm[i]]`` is where character i starts), a core that the URL rule would be
    tried on goes back to Python (its host class tells the stand-ins apart), and the token
    bounds written are positions in ``data`` (the caller maps them back)."""
    alpha = True
    for i in range(a0, b0):
        c = data[i]
        if c < 0x21 or c > 0x7E:
            return -1
        if not (ct[c] & C_ALPHA):
            alpha = False
    if _special_at(data, orig, pm, mapped, a0, b0, special, fl):
        return -1
    if alpha:
        out_s[n] = a0
        out_e[n] = b0
        return n + 1
    a = a0
    b = b0
    # prefixes are consecutive from a0, suffixes from b0 inwards: remember only their cuts
    npre = 0
    nsuf = 0
    last_size = -1
    while b > a and b - a != last_size:
        if _special_at(data, orig, pm, mapped, a, b, special, fl):
            return -1
        last_size = b - a
        pre_len = _find_prefix(data, a, b, ct)
        if pre_len and b > a + pre_len and _special_at(data, orig, pm, mapped, a + pre_len, b, special, fl):
            return -1
        suf_len = _find_suffix(data, a + pre_len, b, ct, ub, uo, cb, co)
        if suf_len and b - suf_len > a and _special_at(data, orig, pm, mapped, a, b - suf_len, special, fl):
            return -1
        if pre_len and suf_len and pre_len + suf_len <= b - a:
            a += pre_len
            pre_cuts[npre] = a
            npre += 1
            b -= suf_len
            suf_cuts[nsuf] = b
            nsuf += 1
        elif pre_len:
            a += pre_len
            pre_cuts[npre] = a
            npre += 1
        elif suf_len:
            b -= suf_len
            suf_cuts[nsuf] = b
            nsuf += 1
    n0 = n
    s = a0
    for k in range(npre):
        out_s[n] = s
        out_e[n] = pre_cuts[k]
        s = pre_cuts[k]
        n += 1
    if b > a:
        if _special_at(data, orig, pm, mapped, a, b, special, fl):
            return -1
        alnum = True
        dot = False
        for i in range(a, b):
            f = ct[data[i]]
            if not (f & (C_ALPHA | C_DIGIT)):
                alnum = False
            if data[i] == 0x2E:
                dot = True
        if alnum:
            out_s[n] = a
            out_e[n] = b
            n += 1
        else:
            if dot and mapped:
                return -1
            url = _url_match(data, a, b) if dot and _maybe_url(data, a, b, ct) else 0
            if url == 2:
                return -1
            if url == 1:
                out_s[n] = a
                out_e[n] = b
                n += 1
            else:
                n = _infix_split(data, a, b, ct, out_s, out_e, n)
    for k in range(nsuf - 1, -1, -1):  # innermost suffix first, as spaCy emits them
        out_s[n] = suf_cuts[k]
        out_e[n] = b0 if k == 0 else suf_cuts[k - 1]
        n += 1
    if n - n0 > 1:
        # spaCy re-merges token runs that spell a special case: every such run starts with
        # one of the (first, second) token pairs in ``merge_pairs``
        # (bit 0 of ``fl``: some pair's first token has these end bytes)
        for t in range(n0, n - 1):
            if mapped:
                hit = _merge_pair(orig, pm[out_s[t]], pm[out_e[t]], pm[out_s[t + 1]],
                                  pm[out_e[t + 1]], fl, merge_pairs)  # fmt: skip
            else:
                hit = _merge_pair(data, out_s[t], out_e[t], out_s[t + 1], out_e[t + 1], fl,
                                  merge_pairs)  # fmt: skip
            if hit:
                return -1
    return n


@nb.njit(cache=True)
def _split_mapped(
    data, p, q, ct, special, fl, merge_pairs, ub, uo, cb, co, tok_s, tok_e, n, cuts, cuts2,
    tb, pm, rep,
):  # type: ignore[no-untyped-def]
    """:func:`_split_chunk` of the non-ASCII chunk data[p:q] through its ASCII stand-ins
    (``rep``, see :func:`split_chunks`); tokens at tok[n:] as byte offsets; -1: Python."""
    t = 0
    j = p
    letters = True  # every character a letter (str.isalpha)
    unmapped = False  # some character a letter with no stand-in (0x80)
    while j < q:
        cp, ln = _decode(data, j)
        if cp >= 0x10000:
            return -1
        r = rep[cp]
        if r == 0:
            return -1
        if r == 0x80:
            unmapped = True
        elif not (ct[r] & C_ALPHA):
            letters = False
        tb[t] = r
        pm[t] = j
        t += 1
        j += ln
    pm[t] = q
    if unmapped:
        # spaCy: a chunk that is no special case and all letters is one token; else Python
        if not letters or _is_special(data, p, q, special, fl):
            return -1
        tok_s[n] = p
        tok_e[n] = q
        return n + 1
    m = _split_chunk(
        tb, 0, t, ct, special, fl, merge_pairs, ub, uo, cb, co, tok_s, tok_e, n, cuts, cuts2,
        data, pm, True,
    )
    for k in range(n, m):
        tok_s[k] = pm[tok_s[k]]
        tok_e[k] = pm[tok_e[k]]
    return m


@nb.njit(cache=True, inline="always")
def _is_ws(data, p, e):  # type: ignore[no-untyped-def]
    """(is whitespace as str.isspace, its byte length) at data[p]."""
    c = data[p]
    if c < 0x80:
        return (9 <= c <= 13) or (28 <= c <= 32), 1
    if c == 0xC2 and p + 1 < e:
        c1 = data[p + 1]
        if c1 == 0x85 or c1 == 0xA0:
            return True, 2
    elif c == 0xE1 and p + 2 < e:
        if data[p + 1] == 0x9A and data[p + 2] == 0x80:
            return True, 3
    elif c == 0xE2 and p + 2 < e:
        c1 = data[p + 1]
        c2 = data[p + 2]
        if c1 == 0x80 and (0x80 <= c2 <= 0x8A or c2 == 0xA8 or c2 == 0xA9 or c2 == 0xAF):
            return True, 3
        if c1 == 0x81 and c2 == 0x9F:
            return True, 3
    elif c == 0xE3 and p + 2 < e:
        if data[p + 1] == 0x80 and data[p + 2] == 0x80:
            return True, 3
    return False, 1


@nb.njit(cache=True)
def _cache_get(ctab, key):  # type: ignore[no-untyped-def]
    """``ctab[j]`` is a slot's (key, value), side by side: a probe reads one cache line."""
    mask = np.uint64(ctab.shape[0] - 1)
    j = np.int64(key & mask)
    while ctab[j, 0] != 0:
        if ctab[j, 0] == key:
            return ctab[j, 1]
        j = np.int64((np.uint64(j) + np.uint64(1)) & mask)
    return np.uint64(0)


@nb.njit(cache=True)
def _cache_set(ctab, cfill, key, v):  # type: ignore[no-untyped-def]
    if cfill[0] * 2 >= ctab.shape[0]:
        ctab[:, 0] = 0
        cfill[0] = 0
    mask = np.uint64(ctab.shape[0] - 1)
    j = np.int64(key & mask)
    while ctab[j, 0] != 0:
        if ctab[j, 0] == key:
            return
        j = np.int64((np.uint64(j) + np.uint64(1)) & mask)
    ctab[j, 0] = key
    ctab[j, 1] = v
    cfill[0] += 1


@nb.njit(cache=True)
def _emit_packed(v, p, q, tok_s, tok_e, n):  # type: ignore[no-untyped-def]
    """Tokens of a cached chunk: ``v`` holds the count (low byte) and the byte lengths of all
    but the last token (one byte each)."""
    cnt = np.int64(v & np.uint64(0xFF))
    for t in range(cnt - 1):
        ln = np.int64((v >> np.uint64(8 * (t + 1))) & np.uint64(0xFF))
        tok_s[n] = p
        tok_e[n] = p + ln
        p += ln
        n += 1
    tok_s[n] = p
    tok_e[n] = q
    return n + 1


@nb.njit(cache=True)
def cache_put(ctab, cfill, keys, vals):  # type: ignore[no-untyped-def]
    """Store Python's splits of fallback chunks (``vals`` packed as in :func:`_emit_packed`)."""
    for i in range(keys.shape[0]):
        _cache_set(ctab, cfill, keys[i], vals[i])


@nb.njit(cache=True)
def chunk_bounds(data, offsets, docs):  # type: ignore[no-untyped-def]
    """``str.split()`` chunks of the documents ``docs``: (starts, ends, per-doc offsets)."""
    cap = 1024
    for d in docs:
        cap += (offsets[d + 1] - offsets[d]) // 2 + 1
    cs = np.empty(cap, dtype=np.int64)
    ce = np.empty(cap, dtype=np.int64)
    doc_c = np.zeros(docs.shape[0] + 1, dtype=np.int64)
    n = 0
    for di in range(docs.shape[0]):
        d = docs[di]
        p = offsets[d]
        e = offsets[d + 1]
        while p < e:
            c = data[p]
            if c < 0x80:
                if (9 <= c <= 13) or (28 <= c <= 32):
                    p += 1
                    continue
            else:
                ws, step = _is_ws(data, p, e)
                if ws:
                    p += step
                    continue
            q = p + 1
            while q < e:
                c = data[q]
                if c < 0x80:
                    if (9 <= c <= 13) or (28 <= c <= 32):
                        break
                    q += 1
                    continue
                ws, step = _is_ws(data, q, e)
                if ws:
                    break
                q += step
            cs[n] = p
            ce[n] = q
            n += 1
            p = q
        doc_c[di + 1] = n
    return cs[:n], ce[:n], doc_c


@nb.njit(cache=True)
def split_chunks(
    data, cs, ce, doc_c, ct, special, fl, merge_pairs, ub, uo, cb, co, ctab, cfill, rep
):  # type: ignore[no-untyped-def]
    """Tokens of the chunks ``cs``/``ce``: (tok_s, tok_e, fallback flag per token, per-doc token
    offsets). A fallback token spans a whole chunk that Python must split.

    ``ctab``/``cfill`` are a chunk cache kept across calls (see :func:`cache_put`):
    a chunk seen before, by the kernel or by Python, costs a hash and a probe.

    ``rep[cp]`` is the ASCII stand-in of code point ``cp`` < 0x10000 that spaCy's affix rules
    cannot tell from it (0: none, 0x80: a letter without one; ``words.nonascii_reps``): a
    chunk with non-ASCII characters is split as its stand-ins (:func:`_split_chunk`'s
    ``mapped``), a chunk of letters alone is one word, any other goes back to Python."""
    total = 16
    for i in range(cs.shape[0]):
        total += ce[i] - cs[i]
    tok_s = np.empty(total, dtype=np.int64)
    tok_e = np.empty(total, dtype=np.int64)
    flag = np.zeros(total, dtype=np.uint8)
    doc_tok = np.zeros(doc_c.shape[0], dtype=np.int64)
    cuts = np.empty(256, dtype=np.int64)
    cuts2 = np.empty(256, dtype=np.int64)
    tb = np.empty(256, dtype=np.uint8)  # a non-ASCII chunk's stand-ins
    pm = np.empty(257, dtype=np.int64)  # where each of its characters starts in data
    n = 0
    d = 0
    for i in range(cs.shape[0]):
        while i >= doc_c[d + 1]:
            d += 1
            doc_tok[d] = n
        p = cs[i]
        q = ce[i]
        # the common case inline: a word of ASCII letters that is not a special case
        alpha = True
        for j in range(p, q):
            if not (ct[data[j]] & C_ALPHA):
                alpha = False
                break
        if alpha and not _is_special(data, p, q, special, fl):
            tok_s[n] = p
            tok_e[n] = q
            n += 1
            continue
        key = np.uint64(0)
        if q - p <= 255:
            key = hash_bytes(data, p, q) | np.uint64(1)
            v = _cache_get(ctab, key)
            if v != 0:
                n = _emit_packed(v, p, q, tok_s, tok_e, n)
                continue
        if q - p + 1 > cuts.shape[0]:
            cuts = np.empty(2 * (q - p + 1), dtype=np.int64)
            cuts2 = np.empty(2 * (q - p + 1), dtype=np.int64)
            tb = np.empty(2 * (q - p + 1), dtype=np.uint8)
            pm = np.empty(2 * (q - p + 1) + 1, dtype=np.int64)
        wide = False
        for j in range(p, q):
            if data[j] >= 0x80:
                wide = True
                break
        if not wide:
            m = _split_chunk(
                data, p, q, ct, special, fl, merge_pairs, ub, uo, cb, co, tok_s, tok_e, n,
                cuts, cuts2, data, pm, False,
            )
        else:
            m = _split_mapped(
                data, p, q, ct, special, fl, merge_pairs, ub, uo, cb, co, tok_s, tok_e, n,
                cuts, cuts2, tb, pm, rep,
            )
        if m >= 0 and key != 0 and m - n <= 7:
            v = np.uint64(m - n)
            for t in range(n, m - 1):
                v |= np.uint64(tok_e[t] - tok_s[t]) << np.uint64(8 * (t - n + 1))
            _cache_set(ctab, cfill, key, v)
        if m < 0:
            tok_s[n] = p
            tok_e[n] = q
            flag[n] = 1
            n += 1
        else:
            n = m
    for dd in range(d + 1, doc_c.shape[0]):
        doc_tok[dd] = n
    return tok_s[:n], tok_e[:n], flag[:n], doc_tok


@nb.njit(cache=True)
def hash_spans(data, starts, ends):  # type: ignore[no-untyped-def]
    out = np.empty(starts.shape[0], dtype=np.uint64)
    for i in range(starts.shape[0]):
        out[i] = hash_bytes(data, starts[i], ends[i])
    return out


@nb.njit(cache=True)
def expand(tok_s, tok_e, flag, doc_tok, u_lens, u_off, inv):  # type: ignore[no-untyped-def]
    """Replace the k-th fallback token by its words: byte lengths
    ``u_lens[u_off[inv[k]]:u_off[inv[k] + 1]]`` (``inv`` maps it to its distinct chunk)."""
    total = 0
    k = 0
    for t in range(tok_s.shape[0]):
        if flag[t]:
            u = inv[k]
            total += u_off[u + 1] - u_off[u]
            k += 1
        else:
            total += 1
    out_s = np.empty(total, dtype=np.int64)
    out_e = np.empty(total, dtype=np.int64)
    out_doc = np.zeros(doc_tok.shape[0], dtype=np.int64)
    n = 0
    k = 0
    d = 0
    for t in range(tok_s.shape[0]):
        while t >= doc_tok[d + 1]:
            d += 1
            out_doc[d] = n
        if flag[t]:
            p = tok_s[t]
            u = inv[k]
            for j in range(u_off[u], u_off[u + 1]):
                out_s[n] = p
                p += u_lens[j]
                out_e[n] = p
                n += 1
            k += 1
        else:
            out_s[n] = tok_s[t]
            out_e[n] = tok_e[t]
            n += 1
    for dd in range(d + 1, doc_tok.shape[0]):
        out_doc[dd] = n
    return out_s, out_e, out_doc


# ---------------------------------------------------------------------------------------------
# Gopher quality: per-document word statistics


@nb.njit(cache=True, inline="always")
def _decode(data, p):  # type: ignore[no-untyped-def]
    c = data[p]
    if c < 0x80:
        return np.int64(c), 1
    if c < 0xE0:
        return ((np.int64(c) & 0x1F) << 6) | (np.int64(data[p + 1]) & 0x3F), 2
    if c < 0xF0:
        return (
            ((np.int64(c) & 0x0F) << 12)
            | ((np.int64(data[p + 1]) & 0x3F) << 6)
            | (np.int64(data[p + 2]) & 0x3F)
        ), 3
    return (
        ((np.int64(c) & 0x07) << 18)
        | ((np.int64(data[p + 1]) & 0x3F) << 12)
        | ((np.int64(data[p + 2]) & 0x3F) << 6)
        | (np.int64(data[p + 3]) & 0x3F)
    ), 4


@nb.njit(cache=True)
def quality_stats(data, tok_s, tok_e, doc_tok, punct, alpha, stop_b, stop_o):  # type: ignore[no-untyped-def]
    """Per document: words, non-symbol words, their characters, words with a letter and a bit
    mask of the stop words present. ``punct``/``alpha`` are indexed by code point (0 to
    0x10FFFF: the caller fills the entries of the code points outside the BMP it has seen)."""
    nd = doc_tok.shape[0] - 1
    out = np.zeros((nd, 5), dtype=np.int64)
    n_stop = stop_o.shape[0] - 1
    for d in range(nd):
        n_words = 0
        n_nonsym = 0
        len_nonsym = 0
        n_alpha = 0
        mask = 0
        for t in range(doc_tok[d], doc_tok[d + 1]):
            a = tok_s[t]
            b = tok_e[t]
            n_words += 1
            nchar = 0
            allp = True
            has_a = False
            p = a
            while p < b:
                cp, k = _decode(data, p)
                p += k
                nchar += 1
                if allp and not punct[cp]:
                    allp = False
                if not has_a and alpha[cp]:
                    has_a = True
            if not allp:
                n_nonsym += 1
                len_nonsym += nchar
            if has_a:
                n_alpha += 1
            for s in range(n_stop):
                ln = stop_o[s + 1] - stop_o[s]
                if ln == b - a:
                    same = True
                    for j in range(ln):
                        if data[a + j] != stop_b[stop_o[s] + j]:
                            same = False
                            break
                    if same:
                        mask |= 1 << s
        out[d, 0] = n_words
        out[d, 1] = n_nonsym
        out[d, 2] = len_nonsym
        out[d, 3] = n_alpha
        out[d, 4] = mask
    return out


# ---------------------------------------------------------------------------------------------
# Gopher repetition: n-gram statistics per document


_SEQ_MUL = np.uint64(0x9E3779B97F4A7C15)
_POLY = np.uint64(0x100000001B3 * 2 + 1)  # odd: invertible mod 2**64


@nb.njit(cache=True)
def _table_size(m):  # type: ignore[no-untyped-def]
    s = 16
    while s < 2 * m:
        s *= 2
    return s


@nb.njit(cache=True)
def _top_chars(h1, cum, n, tab):  # type: ignore[no-untyped-def]
    """datatrove ``find_top_duplicate`` on " ".join n-grams: chars of the most frequent n-gram
    (first seen among ties) times its count. ``tab[j]`` holds a slot's key and
    ``count << 32 | first position`` side by side (one cache line per probe)."""
    m = h1.shape[0] - n + 1
    size = _table_size(m)
    mask = size - 1
    for i in range(size):
        tab[i, 1] = 0
    best_c = np.uint64(0)
    best_first = np.uint64(0)
    one = np.uint64(1) << np.uint64(32)
    low = one - np.uint64(1)
    for i in range(m):
        h = h1[i]
        for k in range(1, n):
            h = h * _SEQ_MUL + h1[i + k]
        h = _mix(h)
        j = np.int64(h & np.uint64(mask))
        while True:
            v = tab[j, 1]
            if v == 0:
                tab[j, 0] = h
                v = one | np.uint64(i)
                tab[j, 1] = v
                break
            if tab[j, 0] == h:
                v += one
                tab[j, 1] = v
                break
            j = (j + 1) & mask
        c = v >> np.uint64(32)
        f = v & low
        if c > best_c or (c == best_c and f < best_first):
            best_c = c
            best_first = f
    bf = np.int64(best_first)
    chars = cum[bf + n] - cum[bf] + n - 1
    return chars * np.int64(best_c)


@nb.njit(cache=True)
def _unigram_bound(h1, cum, tab):  # type: ignore[no-untyped-def]
    """(max over words of count * characters, max word count). The top n-gram g = (w1..wn),
    count c, has c <= count(w_k) for every k, so its ``c * len(" ".join(g))`` is at most
    ``n * first + (n - 1) * second``: a bound that lets a top n-gram pass be skipped."""
    m = h1.shape[0]
    size = _table_size(m)
    mask = size - 1
    for i in range(size):
        tab[i, 1] = 0
    best = 0
    cmax = 0
    for i in range(m):
        h = h1[i]
        j = np.int64(h & np.uint64(mask))
        while True:
            v = tab[j, 1]
            if v == 0:
                tab[j, 0] = h
                v = np.uint64(1)
                tab[j, 1] = v
                break
            if tab[j, 0] == h:
                v += np.uint64(1)
                tab[j, 1] = v
                break
            j = (j + 1) & mask
        c = np.int64(v)
        x = c * (cum[i + 1] - cum[i])
        if x > best:
            best = x
        if c > cmax:
            cmax = c
    return best, cmax


@nb.njit(cache=True)
def _all_dup_chars(ph, qinv, blen_cum, cum, m_words, n, keys):  # type: ignore[no-untyped-def]
    """datatrove ``find_all_duplicate``: its serial walk over "".join n-grams (``keys``: an
    open-addressing set of n-gram hashes, 0 for an empty slot)."""
    m = m_words - n + 1
    if m <= 0:
        return 0
    size = _table_size(m)
    mask = size - 1
    shift = np.uint64(64)
    while (np.int64(1) << np.int64(64 - shift)) < size:
        shift -= np.uint64(1)
    for i in range(size):
        keys[i] = 0
    rep = 0
    idx = 0
    while idx < m:
        # hash of the concatenated bytes of words idx..idx+n-1, independent of where they sit
        # (the slot: the top bits of one multiply; a finaliser would not change which n-grams
        # share a hash, it is a bijection)
        h = ((ph[idx + n] - ph[idx]) * qinv[idx]) ^ np.uint64(blen_cum[idx + n] - blen_cum[idx])
        if h == 0:
            h = np.uint64(1)
        j = np.int64((h * _SEQ_MUL) >> shift)
        found = False
        while keys[j] != 0:
            if keys[j] == h:
                found = True
                break
            j = (j + 1) & mask
        if found:
            rep += cum[idx + n] - cum[idx]
            idx += n
        else:
            keys[j] = h
            idx += 1
    return rep


@nb.njit(cache=True)
def repetition(data, tok_s, tok_e, doc_tok, n_chars, top_n, top_f, dup_n, dup_f):  # type: ignore[no-untyped-def]
    """Per document: 0 to keep, k+1 for the k-th top n-gram rule, 100+k for the k-th duplicated
    n-gram rule (rules in the config's order, as datatrove checks them)."""
    nd = doc_tok.shape[0] - 1
    out = np.zeros(nd, dtype=np.int64)
    # polynomial hash base and its inverse mod 2**64 (Newton's iteration)
    inv = _POLY
    for _ in range(6):
        inv *= np.uint64(2) - _POLY * inv
    cap = 16
    tab = np.empty((cap, 2), dtype=np.uint64)
    keys = np.empty(cap, dtype=np.uint64)
    for d in range(nd):
        t0 = doc_tok[d]
        m = doc_tok[d + 1] - t0
        if m == 0:
            continue
        h1 = np.empty(m, dtype=np.uint64)
        cum = np.zeros(m + 1, dtype=np.int64)
        blen_cum = np.zeros(m + 1, dtype=np.int64)
        ph = np.zeros(m + 1, dtype=np.uint64)
        qinv = np.empty(m + 1, dtype=np.uint64)
        q = np.uint64(1)
        qi = np.uint64(1)
        acc = np.uint64(0)
        for i in range(m):
            a = tok_s[t0 + i]
            b = tok_e[t0 + i]
            nch = 0
            qinv[i] = qi
            acc0 = acc
            for p in range(a, b):
                c = data[p]
                acc += np.uint64(c + 1) * q
                q *= _POLY
                qi *= inv
                if (c & 0xC0) != 0x80:
                    nch += 1
            # the word's own hash: the duplicated-n-gram hash below with n = 1
            h1[i] = _mix(((acc - acc0) * qinv[i]) ^ np.uint64(b - a))
            cum[i + 1] = cum[i] + nch
            blen_cum[i + 1] = blen_cum[i] + (b - a)
            ph[i + 1] = acc
        qinv[m] = qi
        size = _table_size(m)
        if size > cap:
            cap = size
            tab = np.empty((cap, 2), dtype=np.uint64)
            keys = np.empty(cap, dtype=np.uint64)
        nc = n_chars[d]
        reason = 0
        u1 = -1
        cmax = 0
        for k in range(top_n.shape[0]):
            n = top_n[k]
            if m - n + 1 <= 0:
                continue
            if u1 < 0:
                u1, cmax = _unigram_bound(h1, cum, tab)
            if (n * u1 + (n - 1) * cmax) / nc <= top_f[k]:
                continue  # even the bound does not reach the threshold: the rule cannot fire
            if _top_chars(h1, cum, n, tab) / nc > top_f[k]:
                reason = k + 1
                break
        if reason == 0:
            for k in range(dup_n.shape[0]):
                n = dup_n[k]
                if _all_dup_chars(ph, qinv, blen_cum, cum, m, n, keys) / nc > dup_f[k]:
                    reason = 100 + k
                    break
        out[d] = reason
    return out


# ---------------------------------------------------------------------------------------------
# whole-text counts: Gopher quality's character rules, Gopher repetition's lines and paragraphs


@nb.njit(cache=True)
def char_counts(data, offsets, docs):  # type: ignore[no-untyped-def]
    """Per document ``docs[i]``: ``text.count("#")``, ``text.count("...") + text.count("…")``,
    ``text.count("•") + text.count("-")`` and ``len(text.splitlines())`` (what
    ``heuristics._count_lines`` computes), from the UTF-8 bytes."""
    out = np.zeros((docs.shape[0], 4), dtype=np.int64)
    for di in range(docs.shape[0]):
        d = docs[di]
        p = offsets[d]
        e = offsets[d + 1]
        if p == e:
            continue
        n_hash = 0
        n_ell = 0
        n_bul = 0
        breaks = 0
        while p < e:
            c = data[p]
            if c == 0x2E:  # a run of r dots holds r // 3 non-overlapping "..."
                q = p + 1
                while q < e and data[q] == 0x2E:
                    q += 1
                n_ell += (q - p) // 3
                p = q
                continue
            if c == 0x23:
                n_hash += 1
            elif c == 0x2D:
                n_bul += 1
            elif c == 0x0A or (0x0B <= c <= 0x0C) or (0x1C <= c <= 0x1E):
                breaks += 1
            elif c == 0x0D:
                breaks += 1
                if p + 1 < e and data[p + 1] == 0x0A:  # "\r\n" is one break
                    p += 2
                    continue
            elif c == 0xC2 and p + 1 < e and data[p + 1] == 0x85:
                breaks += 1
            elif c == 0xE2 and p + 2 < e and data[p + 1] == 0x80:
                c2 = data[p + 2]
                if c2 == 0xA6:
                    n_ell += 1
                elif c2 == 0xA2:
                    n_bul += 1
                elif c2 == 0xA8 or c2 == 0xA9:
                    breaks += 1
            p += 1
        # a text not ending in a break has one more line than breaks
        e0 = offsets[d]
        j = e - 1
        while j > e0 and (data[j] & 0xC0) == 0x80:
            j -= 1
        c = data[j]
        last_break = False
        if e - j == 1:
            last_break = c == 0x0A or c == 0x0D or (0x0B <= c <= 0x0C) or (0x1C <= c <= 0x1E)
        elif e - j == 2:
            last_break = c == 0xC2 and data[j + 1] == 0x85
        elif e - j == 3:
            last_break = (
                c == 0xE2 and data[j + 1] == 0x80 and (data[j + 2] == 0xA8 or data[j + 2] == 0xA9)
            )
        out[di, 0] = n_hash
        out[di, 1] = n_ell
        out[di, 2] = n_bul
        out[di, 3] = breaks + (0 if last_break else 1)
    return out


@nb.njit(cache=True)
def _hash8(data, a, b):  # type: ignore[no-untyped-def]
    """A 64-bit hash of data[a:b] taking 8 bytes per multiply (for table slots only: equal
    hashes are then compared byte for byte)."""
    h = np.uint64(b - a) * _FNV_PRIME
    p = a
    while p + 8 <= b:
        w = (
            np.uint64(data[p])
            | (np.uint64(data[p + 1]) << np.uint64(8))
            | (np.uint64(data[p + 2]) << np.uint64(16))
            | (np.uint64(data[p + 3]) << np.uint64(24))
            | (np.uint64(data[p + 4]) << np.uint64(32))
            | (np.uint64(data[p + 5]) << np.uint64(40))
            | (np.uint64(data[p + 6]) << np.uint64(48))
            | (np.uint64(data[p + 7]) << np.uint64(56))
        )
        h = (h ^ w) * np.uint64(0x9E3779B97F4A7C15)
        h ^= h >> np.uint64(29)
        p += 8
    w = np.uint64(0)
    sh = np.uint64(0)
    while p < b:
        w |= np.uint64(data[p]) << sh
        sh += np.uint64(8)
        p += 1
    return _mix(h ^ w)


@nb.njit(cache=True)
def _seg_dups(data, ss, se, ns, tab, th):  # type: ignore[no-untyped-def]
    """datatrove ``find_duplicates`` on the byte segments ss[i]:se[i], i < ns: (repeats, their
    characters). Segments are compared byte for byte (a hash only picks the slot)."""
    if ns < 2:
        return 0, 0
    size = 16
    while size < 2 * ns:
        size *= 2
    mask = size - 1
    for i in range(size):
        tab[i] = -1
    dups = 0
    dup_chars = 0
    for i in range(ns):
        a = ss[i]
        b = se[i]
        h = _hash8(data, a, b)
        j = np.int64(h & np.uint64(mask))
        found = False
        while tab[j] >= 0:
            if th[j] == h:
                k = tab[j]
                ka = ss[k]
                if se[k] - ka == b - a:
                    same = True
                    for t in range(b - a):
                        if data[ka + t] != data[a + t]:
                            same = False
                            break
                    if same:
                        found = True
                        break
            j = (j + 1) & mask
        if found:
            dups += 1
            for t in range(a, b):
                if (data[t] & 0xC0) != 0x80:
                    dup_chars += 1
        else:
            tab[j] = i
            th[j] = h
    return dups, dup_chars


@nb.njit(cache=True)
def repetition_lines(data, offsets, docs):  # type: ignore[no-untyped-def]
    """Per document ``docs[i]``: ``len(text)``, then for datatrove's paragraphs
    (``re.split(r"\\n{2,}", text.strip())``) and lines (``re.split("\\n+", text)``) their count,
    repeats and the repeats' characters (``find_duplicates``)."""
    out = np.zeros((docs.shape[0], 7), dtype=np.int64)
    cap = 16
    ss = np.empty(cap, dtype=np.int64)
    se = np.empty(cap, dtype=np.int64)
    tab = np.empty(4 * cap, dtype=np.int64)
    th = np.empty(4 * cap, dtype=np.uint64)
    for di in range(docs.shape[0]):
        d = docs[di]
        s = offsets[d]
        e = offsets[d + 1]
        nchar = 0
        nl = 0
        for p in range(s, e):
            c = data[p]
            if (c & 0xC0) != 0x80:
                nchar += 1
            if c == 0x0A:
                nl += 1
        out[di, 0] = nchar
        if nchar == 0:
            continue
        if nl + 2 > cap:
            while cap < nl + 2:
                cap *= 2
            ss = np.empty(cap, dtype=np.int64)
            se = np.empty(cap, dtype=np.int64)
            tab = np.empty(4 * cap, dtype=np.int64)
            th = np.empty(4 * cap, dtype=np.uint64)
        # paragraphs: the text stripped of str.isspace characters, cut at runs of >= 2 "\n"
        a = s
        while a < e:
            ws, step = _is_ws(data, a, e)
            if not ws:
                break
            a += step
        b = e
        while b > a:
            j = b - 1
            while j > a and (data[j] & 0xC0) == 0x80:
                j -= 1
            ws, step = _is_ws(data, j, b)
            if not ws or j + step != b:
                break
            b = j
        for kind in range(2):
            lo = a if kind == 0 else s
            hi = b if kind == 0 else e
            need = 2 if kind == 0 else 1
            ns = 0
            start = lo
            p = lo
            while p < hi:
                if data[p] == 0x0A:
                    q = p + 1
                    while q < hi and data[q] == 0x0A:
                        q += 1
                    if q - p >= need:
                        ss[ns] = start
                        se[ns] = p
                        ns += 1
                        start = q
                    p = q
                else:
                    p += 1
            ss[ns] = start
            se[ns] = hi
            ns += 1
            dups, dup_chars = _seg_dups(data, ss, se, ns, tab, th)
            out[di, 1 + 3 * kind] = ns
            out[di, 2 + 3 * kind] = dups
            out[di, 3 + 3 * kind] = dup_chars
    return out
