"""numba kernel for the manifest's ``words``: Python ``str.split()`` word counts over the UTF-8
buffer of an Arrow string column, without materialising the words.

Imports numba at import time: import it lazily (``pipeline.tokens.word_count`` does).
Whitespace is exactly what ``str.isspace`` accepts: ASCII 9-13 and 28-32, U+0085, U+00A0,
U+1680, U+2000-U+200A, U+2028, U+2029, U+202F, U+205F, U+3000 (tested against ``str.split``).
"""

from __future__ import annotations

import numpy as np

from pipeline._numba_cache import numba_with_cache

nb = numba_with_cache()

#: byte -> 1 for ASCII whitespace, 2 for a lead byte that may start a multi-byte whitespace
#: character (0xC2, 0xE1, 0xE2, 0xE3), 0 otherwise (continuation bytes 0x80-0xBF never start one)
_BYTE_WS = np.zeros(256, dtype=np.uint8)
_BYTE_WS[[9, 10, 11, 12, 13, 28, 29, 30, 31, 32]] = 1
_BYTE_WS[[0xC2, 0xE1, 0xE2, 0xE3]] = 2
_BYTE_WS.setflags(write=False)


@nb.njit(cache=True, inline="always")
def _ws_len(data, p, e):  # type: ignore[no-untyped-def]
    # bytes of the whitespace character starting at data[p] (a lead byte), 0 if it is not one
    c = data[p]
    if c == 0xC2:
        if p + 1 < e and (data[p + 1] == 0x85 or data[p + 1] == 0xA0):
            return 2
        return 0
    if p + 2 >= e:
        return 0
    c1 = data[p + 1]
    c2 = data[p + 2]
    if c == 0xE1:
        return 3 if c1 == 0x9A and c2 == 0x80 else 0
    if c == 0xE2:
        if c1 == 0x80 and (0x80 <= c2 <= 0x8A or c2 == 0xA8 or c2 == 0xA9 or c2 == 0xAF):
            return 3
        return 3 if c1 == 0x81 and c2 == 0x9F else 0
    return 3 if c1 == 0x80 and c2 == 0x80 else 0  # 0xE3: U+3000


@nb.njit(cache=True)
def count_words(data, offsets):  # type: ignore[no-untyped-def]
    # a word starts at a non-whitespace byte after whitespace (or at the doc's start); the ASCII
    # test is one table load, no branch (the branchy test mispredicted at every word boundary:
    # 2.5x slower), and only the four lead bytes of multi-byte whitespace take the slow path
    ws = _BYTE_WS
    total = 0
    for d in range(offsets.shape[0] - 1):
        p = offsets[d]
        e = offsets[d + 1]
        inword = 0
        while p < e:
            k = ws[data[p]]
            if k == 2:
                n = _ws_len(data, p, e)
                if n:
                    inword = 0
                    p += n
                    continue
                k = 0
            total += (1 - inword) & (1 - k)
            inword = 1 - k
            p += 1
    return total
