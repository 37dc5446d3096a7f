"""numba kernel for the manifest's ``words``: Python ``str.split()`` word counts over the UTF-8
buffer of an Arrow string column, without materialising the words.

Imports numba at import time: import it lazily (``pipeline.tokens.word_count`` does).
Whitespace is exactly what ``str.isspace`` accepts: ASCII 9-13 and 28-32, U+0085, U+00A0,
U+1680, U+2000-U+200A, U+2028, U+2029, U+202F, U+205F, U+3000 (tested against ``str.split``).
"""

from __future__ import annotations


from pipeline._numba_cache import numba_with_cache

nb = numba_with_cache()


@nb.njit(cache=True)
def count_words(data, offsets):  # type: ignore[no-untyped-def]
    total = 0
    for d in range(offsets.shape[0] - 1):
        p = offsets[d]
        e = offsets[d + 1]
        inword = False
        while p < e:
            c = data[p]
            ws = False
            step = 1
            if c < 0x80:
                ws = (9 <= c <= 13) or (28 <= c <= 32)
            elif c == 0xC2 and p + 1 < e:
                c1 = data[p + 1]
                if c1 == 0x85 or c1 == 0xA0:
                    ws = True
                    step = 2
            elif c == 0xE1 and p + 2 < e:
                if data[p + 1] == 0x9A and data[p + 2] == 0x80:
                    ws = True
                    step = 3
            elif c == 0xE2 and p + 2 < e:
                c1 = data[p + 1]
                c2 = data[p + 2]
                if c1 == 0x80 and (0x80 <= c2 <= 0x8A or c2 == 0xA8 or c2 == 0xA9 or c2 == 0xAF):
                    ws = True
                    step = 3
                elif c1 == 0x81 and c2 == 0x9F:
                    ws = True
                    step = 3
            elif c == 0xE3 and p + 2 < e:
                if data[p + 1] == 0x80 and data[p + 2] == 0x80:
                    ws = True
                    step = 3
            if not ws and not inword:
                total += 1
            inword = not ws
            p += step
    return total
