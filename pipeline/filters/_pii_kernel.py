"""numba pre-scan for ``pii.redact``: where in a document each PII pattern could match, read from
UTF-8 bytes without a Python string per row.

Every pattern's match lies inside one maximal run of its characters, and the run qualifies by a
*necessary* condition (a superset is fine: qualifying runs get the exact regular expression;
text outside them cannot match it):

- ``EMAIL``: a run of e-mail characters (``[A-Za-z0-9!#$%&'*+/=?^_`{|}~.@[]:-]``) holding an ``@``;
- ``IPV4``: a run of decimal digits and dots with at least 3 dots and 4 digits;
- ``IPV6``: a run of ``[0-9A-Fa-f:]`` with at least 2 colons;
- ``PHONE``: a run of digits and `` .()+-`` holding ``+`` then a digit, or 3 digits, one of
  `` .-``, 4 digits.

"Digit" is what Python's ``\\d`` matches in a ``str`` pattern (Unicode category Nd: ``٣``, ``３``
count), decoded from UTF-8 and looked up in the Nd ranges passed in. Windows are reported in
characters (Python string offsets), as ``[kind, start, end)``.

Imports numba at import time: import it lazily (``PiiRedactStage`` does).
"""

from __future__ import annotations


import numpy as np

from pipeline._numba_cache import numba_with_cache

nb = numba_with_cache()

EMAIL, IPV4, IPV6, PHONE = 1, 2, 4, 8


def nd_ranges() -> np.ndarray:
    """Non-ASCII code points Python's ``\\d`` matches, as ``[start, end)`` pairs (flattened)."""
    out: list[int] = []
    start = -1
    for cp in range(0x80, 0x110000):
        d = chr(cp).isdecimal()
        if d and start < 0:
            start = cp
        elif not d and start >= 0:
            out += [start, cp]
            start = -1
    if start >= 0:
        out += [start, 0x110000]
    return np.array(out, np.int64)


@nb.njit(cache=True)
def _is_nd(cp, ranges):  # type: ignore[no-untyped-def]
    lo = 0
    hi = ranges.shape[0] // 2
    while lo < hi:  # first range whose end is > cp
        mid = (lo + hi) // 2
        if ranges[2 * mid + 1] <= cp:
            lo = mid + 1
        else:
            hi = mid
    return lo < ranges.shape[0] // 2 and ranges[2 * lo] <= cp


@nb.njit(cache=True)
def _is_hex(c):  # type: ignore[no-untyped-def]
    return (48 <= c <= 57) or (65 <= c <= 70) or (97 <= c <= 102)


# character classes of ASCII bytes (non-ASCII characters are only ever digits, or nothing)
_C_EMAIL, _C_DIGIT, _C_DOT, _C_HEX, _C_COLON, _C_PHONE, _C_AT, _C_SEP, _C_PLUS = (
    1,
    2,
    4,
    8,
    16,
    32,
    64,
    128,
    256,
)


def ascii_classes() -> np.ndarray:
    t = np.zeros(128, np.int32)
    for (
        ch
    ) in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!#$%&'*+/=?^_`{|}~-.@[]:":
        t[ord(ch)] |= _C_EMAIL
    for ch in "0123456789":
        t[ord(ch)] |= _C_DIGIT
    for ch in "0123456789abcdefABCDEF":
        t[ord(ch)] |= _C_HEX
    for ch in "0123456789 .()+-":
        t[ord(ch)] |= _C_PHONE
    for ch in " .-":
        t[ord(ch)] |= _C_SEP
    t[ord(".")] |= _C_DOT
    t[ord(":")] |= _C_COLON
    t[ord("@")] |= _C_AT
    t[ord("+")] |= _C_PLUS
    return t


@nb.njit(cache=True)
def _emit(win, n, kind, start, end):  # type: ignore[no-untyped-def]
    if n < win.shape[0]:
        win[n, 0] = kind
        win[n, 1] = start
        win[n, 2] = end
    return n + 1


@nb.njit(cache=True)
def scan_doc(data, p, e, ranges, classes, record, win):  # type: ignore[no-untyped-def]
    """Flags of ``data[p:e]``; with ``record``, also its qualifying runs, written to ``win`` as
    far as it has room: returns ``(flags, n_windows)`` (rerun with room for ``n_windows``)."""
    flags = 0
    n = 0
    ci = 0  # character index
    s_start = -1  # e-mail run
    s_at = False
    d_start = -1  # digits and dots
    d_dots = 0
    d_digits = 0
    h_start = -1  # hex and colons
    h_colons = 0
    f_start = -1  # phone characters
    f_ok = False
    drun = 0
    before_sep = 0
    after_plus = False
    while True:
        end = p >= e
        cls = 0
        step = 1
        if not end:
            c = data[p]
            if c < 0x80:
                cls = classes[c]
            else:
                if c >= 0xF0 and p + 3 < e:
                    cp = ((c & 0x07) << 18) | ((data[p + 1] & 0x3F) << 12)
                    cp |= ((data[p + 2] & 0x3F) << 6) | (data[p + 3] & 0x3F)
                    step = 4
                elif c >= 0xE0 and p + 2 < e:
                    cp = ((c & 0x0F) << 12) | ((data[p + 1] & 0x3F) << 6) | (data[p + 2] & 0x3F)
                    step = 3
                elif c >= 0xC0 and p + 1 < e:
                    cp = ((c & 0x1F) << 6) | (data[p + 1] & 0x3F)
                    step = 2
                else:
                    cp = 0
                if _is_nd(np.int64(cp), ranges):
                    cls = _C_DIGIT | _C_PHONE
        digit = (cls & _C_DIGIT) != 0
        # e-mail runs
        if cls & _C_EMAIL:
            if s_start < 0:
                s_start = ci
                s_at = False
            if cls & _C_AT:
                s_at = True
        elif s_start >= 0:
            if s_at:
                flags |= EMAIL
                if record:
                    n = _emit(win, n, EMAIL, s_start, ci)
            s_start = -1
        # digits and dots
        if cls & (_C_DIGIT | _C_DOT):
            if d_start < 0:
                d_start = ci
                d_dots = 0
                d_digits = 0
            if digit:
                d_digits += 1
            else:
                d_dots += 1
        elif d_start >= 0:
            if d_dots >= 3 and d_digits >= 4:
                flags |= IPV4
                if record:
                    n = _emit(win, n, IPV4, d_start, ci)
            d_start = -1
        # hex and colons
        if cls & (_C_HEX | _C_COLON):
            if h_start < 0:
                h_start = ci
                h_colons = 0
            if cls & _C_COLON:
                h_colons += 1
        elif h_start >= 0:
            if h_colons >= 2:
                flags |= IPV6
                if record:
                    n = _emit(win, n, IPV6, h_start, ci)
            h_start = -1
        # phone characters
        if cls & _C_PHONE:
            if f_start < 0:
                f_start = ci
                f_ok = False
                drun = 0
                before_sep = 0
                after_plus = False
            if digit:
                if after_plus:
                    f_ok = True
                drun += 1
                if before_sep >= 3 and drun >= 4:
                    f_ok = True
            else:
                if (cls & _C_SEP) and drun > 0:
                    before_sep = drun
                else:
                    before_sep = 0
                drun = 0
            after_plus = (cls & _C_PLUS) != 0
        elif f_start >= 0:
            if f_ok:
                flags |= PHONE
                if record:
                    n = _emit(win, n, PHONE, f_start, ci)
            f_start = -1
        if end:
            break
        p += step
        ci += 1
    return flags, n


@nb.njit(cache=True)
def scan_batch(data, offsets, valid, ranges, classes, win, counts):  # type: ignore[no-untyped-def]
    """Every document's qualifying runs, one after another in ``win`` (``counts[d]`` of them for
    document ``d``, character offsets within it); returns the total (more than ``len(win)``:
    call again, bigger)."""
    total = 0
    cap = win.shape[0]
    for d in range(offsets.shape[0] - 1):
        counts[d] = 0
        if not valid[d]:
            continue
        n = scan_doc(
            data, offsets[d], offsets[d + 1], ranges, classes, True, win[min(total, cap) :]
        )[1]
        counts[d] = n
        total += n
    return total
