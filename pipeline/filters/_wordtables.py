"""Tables and constants of the word kernels (:mod:`pipeline.filters._wordkernels`), in numpy
only: the callers build their tables from here without importing numba (the kernels themselves
may be the ahead-of-time compiled copies, :mod:`pipeline._aot`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

_FNV_OFF = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)

# character classes of printable ASCII (0x21-0x7E), as bit flags in one table
C_ALPHA = 1  # [A-Za-z]
C_DIGIT = 2
C_UPPER = 4
C_PREFIX1 = 8  # one-character prefixes: !"#$%&'()*+,:;<=>?[]_`{}  (+ only before a non-digit)
C_SUFFIX1 = 16  # one-character suffixes, unconditional: !"#&'()*,:;<>?[]_`{}
C_DOT_LB = 32  # what may precede a final "." for spaCy to split it off
C_INFIX_COLON = 64  # [:<>=/] infix between alnum and alpha
C_QUOTE = 128  # the ASCII quotes of spaCy's dot infix: " ' , `

_PREFIX1 = "!\"#$%&'()*+,:;<=>?[]_`{}"
_SUFFIX1 = "!\"#&'()*,:;<>?[]_`{}"
_DOT_LB = "!\"#%&'()*+,-0123456789:;<>?[]_`abcdefghijklmnopqrstuvwxyz{|}"

#: ASCII units spaCy splits off after a digit ("10km" -> "10", "km"), in its order.
UNITS = (
    "km", "m", "dm", "cm", "mm", "ha", "nm", "yd", "in", "ft", "kg", "g", "mg", "t", "lb", "oz",
    "m/s", "km/h", "kmh", "mph", "hPa", "Pa", "mbar", "mb", "MB", "kb", "KB", "gb", "GB", "tb",
    "TB", "T", "G", "M", "K", "%",
)  # fmt: skip
#: currencies after a digit (ASCII ones)
CURRENCIES = ("$", "US$", "C$", "A$")


def char_table() -> np.ndarray:
    t = np.zeros(256, dtype=np.uint8)  # bytes >= 0x80 have no class
    for i in range(128):
        c = chr(i)
        f = 0
        if c.isascii() and c.isalpha():
            f |= C_ALPHA
        if c.isdigit():
            f |= C_DIGIT
        if "A" <= c <= "Z":
            f |= C_UPPER
        if c in _PREFIX1:
            f |= C_PREFIX1
        if c in _SUFFIX1:
            f |= C_SUFFIX1
        if c in _DOT_LB:
            f |= C_DOT_LB
        if c in ":<>=/":
            f |= C_INFIX_COLON
        if c in "\"',`":
            f |= C_QUOTE
        t[i] = f
    return t


def packed(strings: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(bytes, offsets) of ``strings`` for the kernels."""
    bs = [s.encode() for s in strings]
    offs = np.zeros(len(bs) + 1, dtype=np.int64)
    offs[1:] = np.cumsum([len(b) for b in bs])
    return np.frombuffer(b"".join(bs), dtype=np.uint8).copy(), offs


#: chunk cache: open addressing over 2**20 slots, emptied when half full
CACHE_SLOTS = 1 << 20


def rep_table(path: str | Path) -> np.ndarray:
    """``rep[cp]``: the ASCII stand-in of code point ``cp`` < 0x10000 for the word kernel (0:
    none, 0x80: a letter without one), from the runs ``[first, last, byte]`` that
    ``pipeline.filters.words.export_nonascii_reps`` writes; ASCII maps to itself."""
    import json

    rep = np.zeros(0x10000, dtype=np.uint8)
    rep[0x21:0x7F] = np.arange(0x21, 0x7F, dtype=np.uint8)
    for first, last, byte in json.loads(Path(path).read_text(encoding="utf-8"))["runs"]:
        rep[first : last + 1] = byte
    return rep
