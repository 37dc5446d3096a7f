"""A fast word splitter that reproduces spaCy's blank-English tokenizer, for the heuristic filters.

datatrove's Gopher, repetition and FineWeb rules count "words" as spaCy's English tokenizer
splits them (``datatrove.utils.text.split_into_words``: ``spacy.blank("en")``, whitespace
tokens dropped). Building a spaCy ``Doc`` for every document is where those filters spend most
of their time (~80k words/s on one core). This module runs the same algorithm — spaCy's
``Tokenizer._split_affixes`` / ``_attach_tokens``: special cases, prefix, suffix and infix
rules, URL match — in plain Python over whitespace-separated chunks, with spaCy 3.8's English
rules vendored in ``data/spacy_en_tokenizer.json`` (MIT licence, © ExplosionAI; regenerate with
``python -m pipeline.filters.words --export``). Chunks repeat (Zipf), so each distinct chunk is
split once and cached; after warm-up a document costs one ``str.split`` and a dict lookup per
chunk.

Differences from spaCy: its special-case matcher (the pass that merges ``)`` ``:`` back into
the emoticon ``):``) runs over the whole document, so a match spanning two chunks — which it
then leaves alone — can block a merge inside one chunk; we merge within chunks only. On 600
real documents (910,047 tokens) the word lists were identical; on another 120, one token
differed (``format): ')``).
"""

from __future__ import annotations

import json
import os
import re
import sys
import threading
from collections.abc import Callable, Iterable
from functools import lru_cache
from itertools import chain, filterfalse, islice
from pathlib import Path
from typing import Any

RULES_PATH = Path(__file__).with_name("data") / "spacy_en_tokenizer.json"
#: non-ASCII characters the word kernel splits as an ASCII stand-in (see :func:`nonascii_reps`)
REPS_PATH = Path(__file__).with_name("data") / "spacy_en_nonascii.json"

#: Characters at the end of a chunk that the suffix rules look at (longest fixed suffix: 5).
_SUFFIX_WINDOW = 12

_APOSTROPHES = ("'", "’")
_DIGIT = re.compile("[0-9]")

#: Distinct chunks kept in the per-process cache (oldest half evicted when full): ~100 MB.
MAX_CACHE = 400_000


class EnglishWordSplitter:
    """spaCy's English tokenizer algorithm over whitespace chunks, with a chunk cache."""

    def __init__(self, rules: dict[str, Any]):
        self.specials: dict[str, tuple[str, ...]] = {
            k: tuple(v) for k, v in rules["special_cases"].items()
        }
        self._prefix = re.compile(rules["prefix"]).match  # every alternative starts with ^
        self._suffix_re = re.compile(rules["suffix"])
        self._infix = re.compile(rules["infix"]).finditer
        self._url = re.compile(rules["url"]).match
        # spaCy's second pass (its PhraseMatcher): token runs that spell a special case
        # containing affix characters are merged back into that special case's tokens.
        self._merge: dict[tuple[str, ...], tuple[str, ...]] = {
            tuple(pattern): self.specials[key] for key, pattern in rules["matcher_patterns"].items()
        }
        self._merge_max = max((len(p) for p in self._merge), default=0)
        self._merge_first = frozenset(p[0] for p in self._merge)
        self.cache: dict[str, tuple[str, ...]] = {}

    # -- one chunk (no whitespace inside) ---------------------------------------------------

    def split_chunk(self, chunk: str) -> tuple[str, ...]:
        """Tokens of one whitespace-free chunk, as spaCy's ``Tokenizer._tokenize`` gives them."""
        special = self.specials.get(chunk)
        if special is not None:
            return special
        if chunk.isalpha():
            return (chunk,)
        prefixes: list[str] = []
        suffixes: list[str] = []
        string = self._split_affixes(chunk, prefixes, suffixes)
        tokens = prefixes
        if string:
            special = self.specials.get(string)
            if special is not None:
                tokens.extend(special)
            elif string.isalnum():  # no infix rule can match letters and digits alone
                tokens.append(string)
            elif self._url(string):
                tokens.append(string)
            else:
                tokens.extend(self._split_infixes(string))
        tokens.extend(reversed(suffixes))
        if len(tokens) > 1:
            return self._merge_specials(tokens)
        return tuple(tokens)

    def _merge_specials(self, tokens: list[str]) -> tuple[str, ...]:
        """spaCy's ``_apply_special_cases``: longest matches first, no overlaps."""
        merge = self._merge
        first = self._merge_first
        if not any(t in first for t in tokens[:-1]):
            return tuple(tokens)
        n = len(tokens)
        found: list[tuple[int, int]] = []
        for i in range(n):
            for j in range(i + 2, min(n, i + self._merge_max) + 1):
                if tuple(tokens[i:j]) in merge:
                    found.append((i, j))
        if not found:
            return tuple(tokens)
        found.sort(key=lambda m: (m[1] - m[0], -m[0]))  # spaCy: longest, then leftmost, first
        seen: set[int] = set()
        chosen: list[tuple[int, int]] = []
        for i, j in reversed(found):
            if i not in seen and j - 1 not in seen:
                chosen.append((i, j))
            seen.update(range(i, j))
        out: list[str] = []
        pos = 0
        for i, j in sorted(chosen):
            out.extend(tokens[pos:i])
            out.extend(merge[tuple(tokens[i:j])])
            pos = j
        out.extend(tokens[pos:])
        return tuple(out)

    def _find_prefix(self, s: str) -> int:
        m = self._prefix(s)
        return m.end() - m.start() if m else 0

    def _find_suffix(self, s: str) -> int:
        # Suffix rules that end in a letter are 's/'S/’s/’S and units after an ASCII digit
        # ("10km", at most 5 letters): a string ending in a letter otherwise has no suffix.
        if not s:
            return 0
        if s[-1].isalpha() and s[-2:-1] not in _APOSTROPHES and not _DIGIT.search(s, len(s) - 7):
            return 0
        # Every suffix rule is anchored at the end; only ``\.\.+$`` can be longer than the
        # window, and then its match starts at the window's first character: search again.
        pos = len(s) - _SUFFIX_WINDOW
        if pos > 0:
            m = self._suffix_re.search(s, pos)
            if m is None or m.start() > pos:
                return m.end() - m.start() if m else 0
        m = self._suffix_re.search(s)
        return m.end() - m.start() if m else 0

    def _split_affixes(self, string: str, prefixes: list[str], suffixes: list[str]) -> str:
        specials = self.specials
        last_size = -1
        while string and len(string) != last_size:
            if string in specials:
                break
            last_size = len(string)
            pre_len = self._find_prefix(string)
            prefix = minus_pre = ""
            if pre_len:
                prefix = string[:pre_len]
                minus_pre = string[pre_len:]
                if minus_pre and minus_pre in specials:
                    prefixes.append(prefix)
                    string = minus_pre
                    break
            suf_len = self._find_suffix(string[pre_len:])
            suffix = minus_suf = ""
            if suf_len:
                suffix = string[-suf_len:]
                minus_suf = string[:-suf_len]
                if minus_suf and minus_suf in specials:
                    suffixes.append(suffix)
                    string = minus_suf
                    break
            if pre_len and suf_len and pre_len + suf_len <= len(string):
                string = string[pre_len:-suf_len]
                prefixes.append(prefix)
                suffixes.append(suffix)
            elif pre_len:
                string = minus_pre
                prefixes.append(prefix)
            elif suf_len:
                string = minus_suf
                suffixes.append(suffix)
        return string

    def _split_infixes(self, string: str) -> list[str]:
        out: list[str] = []
        start = 0
        for m in self._infix(string):
            s, e = m.start(), m.end()
            if s == 0:
                continue
            if s != start:
                out.append(string[start:s])
            if s != e:
                out.append(string[s:e])
            start = e
        if start < len(string):
            out.append(string[start:])
        return out

    # -- documents ----------------------------------------------------------------------------

    def chunk_tokens(self, chunks: Iterable[str]) -> dict[str, tuple[str, ...]]:
        """Make sure every chunk is in the cache; returns the cache."""
        cache = self.cache
        missing = list(filterfalse(cache.__contains__, chunks))
        if missing:
            if len(cache) + len(missing) > MAX_CACHE:
                evict_oldest(cache, len(missing))
                missing = list(filterfalse(cache.__contains__, chunks))
            split = self.split_chunk
            for c in missing:
                cache[c] = split(c)
        return cache

    def words(self, text: str) -> list[str]:
        """All tokens of ``text`` in order, whitespace tokens dropped (= datatrove's words)."""
        chunks = text.split()
        get = self.cache.__getitem__
        try:
            return list(chain.from_iterable(map(get, chunks)))
        except KeyError:
            get = self.chunk_tokens(set(chunks)).__getitem__
            return list(chain.from_iterable(map(get, chunks)))


def evict_oldest(cache: dict[Any, Any], room: int) -> None:
    """Drop the oldest-inserted half of ``cache`` (at least ``room`` entries).

    Half of a corpus's distinct chunks occur once; clearing everything when the cache fills
    would also throw away "the" and ",". Frequent chunks evicted here come back on their next
    occurrence.
    """
    n = min(len(cache), max(len(cache) // 2, room))
    for key in list(islice(cache, n)):
        del cache[key]


@lru_cache(maxsize=1)
def english_splitter() -> EnglishWordSplitter:
    """The process-wide splitter (rules load once, the chunk cache is shared)."""
    return EnglishWordSplitter(json.loads(RULES_PATH.read_text(encoding="utf-8")))


def split_words(text: str) -> list[str]:
    """spaCy-English words of ``text`` (what ``datatrove.utils.text.split_into_words`` returns)."""
    return english_splitter().words(text)


class BatchTokens:
    """The words of a batch of texts as byte spans into the batch's UTF-8 buffer.

    ``tok_s[doc_tok[i]:doc_tok[i + 1]]`` / ``tok_e[...]`` are the start/end byte offsets, in
    ``data``, of the words of the i-th selected document ``docs[i]`` — the same words, in the
    same order, as :func:`split_words` gives (tested).
    """

    __slots__ = ("data", "offsets", "docs", "tok_s", "tok_e", "doc_tok", "fallback_chunks")

    def __init__(
        self,
        data: Any,
        offsets: Any,
        docs: Any,
        tok_s: Any,
        tok_e: Any,
        doc_tok: Any,
        fallback_chunks: int,
    ):
        self.data = data
        self.offsets = offsets
        self.docs = docs
        self.tok_s = tok_s
        self.tok_e = tok_e
        self.doc_tok = doc_tok
        self.fallback_chunks = fallback_chunks

    def words(self, i: int) -> list[str]:
        """The words of the i-th selected document, as strings (for tests and debugging)."""
        raw = self.data
        return [
            bytes(raw[a:b]).decode("utf-8")
            for a, b in zip(
                self.tok_s[self.doc_tok[i] : self.doc_tok[i + 1]].tolist(),
                self.tok_e[self.doc_tok[i] : self.doc_tok[i + 1]].tolist(),
                strict=True,
            )
        ]


def utf8_buffers(col: Any) -> tuple[Any, Any]:
    """(UTF-8 bytes, int64 offsets) of an Arrow string column (nulls read as "")."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    if col.null_count:
        col = pc.fill_null(col, "")
    if col.type == pa.string():  # 32-bit offsets: widen them, not the text
        _, offs_buf, data_buf = col.buffers()
        offs32 = np.frombuffer(offs_buf, dtype=np.int32)[col.offset : col.offset + len(col) + 1]
        offsets = offs32.astype(np.int64)
    else:
        if col.type != pa.large_string():
            col = col.cast(pa.large_string())
        _, offs_buf, data_buf = col.buffers()
        offsets = np.frombuffer(offs_buf, dtype=np.int64)[col.offset : col.offset + len(col) + 1]
    data = (
        np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None else np.zeros(1, np.uint8)
    )
    return data, offsets


def _mix(h: Any) -> Any:
    """``_wordkernels._mix`` (splitmix64's finaliser) on a numpy uint64 array."""
    import numpy as np

    h = h ^ (h >> np.uint64(30))
    h = h * np.uint64(0xBF58476D1CE4E5B9)
    h = h ^ (h >> np.uint64(27))
    h = h * np.uint64(0x94D049BB133111EB)
    return h ^ (h >> np.uint64(31))


def hash_strings(strings: tuple[str, ...]) -> Any:
    """``_wordkernels.hash_bytes`` of each string's UTF-8 bytes, in numpy (no numba call, so
    building the tables loads no kernel; equality with the kernel is tested)."""
    import numpy as np

    bs = [x.encode("utf-8") for x in strings]
    lens = np.array([len(b) for b in bs], dtype=np.int64)
    width = int(lens.max()) if len(bs) else 0
    mat = np.zeros((len(bs), width), dtype=np.uint8)
    for i, b in enumerate(bs):
        mat[i, : len(b)] = np.frombuffer(b, dtype=np.uint8)
    h = np.full(len(bs), 0xCBF29CE484222325, dtype=np.uint64)
    for j in range(width):
        live = j < lens
        h[live] = (h[live] ^ mat[live, j].astype(np.uint64)) * np.uint64(0x100000001B3)
    return _mix(h)


def keep_freed_memory(limit: int = 1 << 28) -> bool:
    """Ask glibc's malloc to serve blocks up to ``limit`` bytes from its heap and to keep up to
    twice that freed there, so that the word kernels' per-batch arrays (tens of MB: above
    glibc's 32 MB ceiling for reusing freed blocks) reuse pages already mapped instead of
    faulting in fresh zeroed ones for every batch (on 40 MB of documents: ~35 k fewer page
    faults per command, ~0.05-0.1 CPU-s). Process-wide: the process then keeps its peak heap
    (a batch's arrays are bounded by the batch). A no-op (False) where libc is not glibc."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(mallopt(m_mmap_threshold, limit)) and bool(mallopt(m_trim_threshold, 2 * limit))


class _KernelCalls:
    """The kernels of :mod:`pipeline.filters._wordkernels` by name: the copy compiled ahead of
    time (:mod:`pipeline._aot`, group ``words``: the same source, built once per machine, so a
    process never imports numba or loads its JIT cache, ~0.5 CPU-s) for arguments of exactly
    its declared kinds, else numba's JIT kernel (numba imported then). ``ASSAY_AOT=0``: the
    JIT kernels always."""

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name.startswith("__"):
            raise AttributeError(name)
        from pipeline import _aot

        if name not in _aot.WORD_SPECS or _aot.kernels("words") is None:
            from pipeline.filters import _wordkernels

            fn = getattr(_wordkernels, name)
        else:

            def jit() -> Callable[..., Any]:
                from pipeline.filters import _wordkernels

                return getattr(_wordkernels, name)  # type: ignore[no-any-return]

            def fn(*args: Any) -> Any:
                return _aot.call_or_jit(name, jit, *args)

        setattr(self, name, fn)
        return fn


#: the word kernels (see :class:`_KernelCalls`)
KERNELS = _KernelCalls()


class _Kernels:
    """Tables for the numba splitter, built once per process from the vendored rules."""

    def __init__(self, splitter: EnglishWordSplitter):
        import numpy as np

        keep_freed_memory()

        from pipeline.filters import _wordtables as k

        self.k = KERNELS
        self.ct = k.char_table()
        specials = tuple(splitter.specials)
        longest = max(len(x.encode()) for x in specials)
        self.special = np.concatenate(
            ([np.uint64(longest) << np.uint64(32)], np.unique(hash_strings(specials)))
        ).astype(np.uint64)
        pairs = sorted({p[:2] for p in splitter._merge})
        h = hash_strings(tuple(x for p in pairs for x in p))
        self.merge_pairs = np.unique(_mix(h[0::2] * np.uint64(0x9E3779B97F4A7C15) + h[1::2]))
        #: bit min(n, 31): a special case of n bytes starts and ends with these bytes; bit 0:
        #: a merge pattern's first token does (index: first byte * 256 + last byte)
        self.fl = np.zeros(65536, dtype=np.uint32)
        for x in specials:
            b = x.encode()
            self.fl[b[0] * 256 + b[-1]] |= np.uint32(1 << min(len(b), 31))
        for first, _ in pairs:
            b = first.encode()
            self.fl[b[0] * 256 + b[-1]] |= np.uint32(1)
        #: the kernel's chunk cache (16 MB; see ``_wordkernels.split_chunks``)
        self.ctab = np.zeros((k.CACHE_SLOTS, 2), dtype=np.uint64)
        self.cfill = np.zeros(1, dtype=np.int64)
        #: code point -> ASCII stand-in for the kernel (see ``_wordkernels.split_chunks``)
        self.rep = k.rep_table(REPS_PATH)
        self.units = k.packed(k.UNITS)
        self.currencies = k.packed(k.CURRENCIES)
        #: 64-bit chunk hash -> byte lengths of its words, for the chunks the kernel hands back
        self.fallback: dict[int, tuple[int, ...]] = {}


@lru_cache(maxsize=1)
def _kernels() -> _Kernels:
    return _Kernels(english_splitter())


# ---------------------------------------------------------------------------------------------
# the words of the last batch, shared between the stages that split it (Gopher repetition and
# quality in one pipeline: one split per document per batch)


class _SpanMemo(threading.local):
    """The last :class:`BatchTokens` this thread computed (or derived), for one column.

    ``key`` names the column by its chunks' buffer addresses, offsets and lengths; ``hold``
    keeps those chunks alive, so no other column can have the key while the entry lives
    (Arrow buffers are immutable: same buffers, same bytes). ``mask`` is a filter stage's
    keep-mask over that column (:func:`note_filter`): the next stage then sees the kept rows
    as a new column, whose words are derived from these, after checking that its bytes are
    the kept rows' bytes (so a stage in between that rewrites text only costs a new split).
    One entry per thread, replaced at every miss: at most one batch is held.
    """

    key: Any = None
    hold: Any = None
    bt: BatchTokens | None = None
    mask: Any = None
    hits = 0
    misses = 0


_MEMO = _SpanMemo()

#: ``ASSAY_SHARE_WORDS=0`` turns the sharing off (an A/B switch for the benchmarks)
SHARE_WORDS = os.environ.get("ASSAY_SHARE_WORDS", "1") != "0"


def _chunks(col: Any) -> list[Any]:
    import pyarrow as pa

    return list(col.chunks) if isinstance(col, pa.ChunkedArray) else [col]


def _col_key(chunks: list[Any]) -> tuple[Any, ...]:
    return tuple(
        (str(c.type), c.offset, len(c), tuple(0 if b is None else b.address for b in c.buffers()))
        for c in chunks
    )


def _take_docs(bt: BatchTokens, pos: Any, shift: Any = None) -> tuple[Any, Any, Any]:
    """(tok_s, tok_e, doc_tok) of the documents at positions ``pos`` of ``bt.docs``, their
    spans moved by ``shift[i]`` bytes for the i-th (default: not moved).

    Documents at consecutive positions with the same shift are one contiguous run of spans on
    both sides: copied run by run (a filter's kept rows are a few runs, not one gather each).
    """
    import numpy as np

    n = len(pos)
    if shift is None:
        shift = np.zeros(n, dtype=np.int64)
    counts = bt.doc_tok[pos + 1] - bt.doc_tok[pos]
    doc_tok = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts, out=doc_tok[1:])
    tok_s = np.empty(doc_tok[-1], dtype=bt.tok_s.dtype)
    tok_e = np.empty(doc_tok[-1], dtype=bt.tok_e.dtype)
    brk = np.flatnonzero((np.diff(pos) != 1) | (np.diff(shift) != 0)) + 1
    starts = np.concatenate(([0], brk)).tolist()
    ends = np.concatenate((brk, [n])).tolist() if n else []
    for ra, rb in zip(starts if n else [], ends, strict=True):
        a, b = int(bt.doc_tok[pos[ra]]), int(bt.doc_tok[pos[rb - 1] + 1])
        o, d = int(doc_tok[ra]), int(shift[ra])
        np.add(bt.tok_s[a:b], d, out=tok_s[o : o + b - a])
        np.add(bt.tok_e[a:b], d, out=tok_e[o : o + b - a])
    return tok_s, tok_e, doc_tok


def _positions(have: Any, want: Any) -> Any:
    """Positions of ``want`` in the sorted ``have``, or None when one is missing."""
    import numpy as np

    pos = np.searchsorted(have, want)
    if len(want) and (
        pos[-1] >= len(have) or not np.array_equal(have[np.minimum(pos, len(have) - 1)], want)
    ):
        return None
    return pos


def _select(bt: BatchTokens, docs: Any) -> BatchTokens | None:
    """``bt`` restricted to the rows ``docs`` (None when it lacks one of them)."""
    if len(docs) == len(bt.docs) and (bt.docs == docs).all():
        return bt
    pos = _positions(bt.docs, docs)
    if pos is None:
        return None
    tok_s, tok_e, doc_tok = _take_docs(bt, pos)
    return BatchTokens(bt.data, bt.offsets, docs, tok_s, tok_e, doc_tok, bt.fallback_chunks)


def _derive(bt: BatchTokens, mask: Any, data: Any, offsets: Any) -> BatchTokens | None:
    """The words of a column holding ``bt``'s rows where ``mask`` (its UTF-8 ``data`` and
    ``offsets``), or None when its bytes are not exactly those rows' or ``bt`` lacks a row."""
    import numpy as np

    kept = np.flatnonzero(mask)
    n = len(offsets) - 1
    if len(kept) != n:
        return None
    off_in = bt.offsets
    if not np.array_equal(off_in[kept + 1] - off_in[kept], offsets[1:] - offsets[:-1]):
        return None
    # runs of consecutive kept rows are contiguous bytes on both sides: compare run by run
    brk = np.flatnonzero(np.diff(kept) != 1) + 1
    a = np.concatenate(([0], brk))
    b = np.concatenate((brk, [n]))
    for ra, rb in zip(a.tolist(), b.tolist(), strict=True):
        src = bt.data[off_in[kept[ra]] : off_in[kept[rb - 1] + 1]]
        if not np.array_equal(src, data[offsets[ra] : offsets[rb]]):
            return None
    pos = _positions(bt.docs, kept)
    if pos is None:
        return None
    tok_s, tok_e, doc_tok = _take_docs(bt, pos, offsets[:-1] - off_in[kept])
    docs = np.arange(n, dtype=np.int64)
    return BatchTokens(data, offsets, docs, tok_s, tok_e, doc_tok, bt.fallback_chunks)


def note_filter(col: Any, mask: Any) -> None:
    """A filter stage keeps the rows ``mask`` of ``col``: if this thread's last words are
    ``col``'s, the next stage's :func:`batch_tokens` derives the kept rows' words from them."""
    m = _MEMO
    if m.bt is not None and m.key == _col_key(_chunks(col)):
        m.mask = mask


def batch_tokens(col: Any, docs: Any = None) -> BatchTokens:
    """spaCy-English words of the rows ``docs`` (default: all) of an Arrow string column.

    The numba kernel splits printable-ASCII chunks itself and hands every other chunk (and
    any it cannot decide exactly) to :class:`EnglishWordSplitter`, whose results are cached.
    The words of the last column split in this thread are kept (:class:`_SpanMemo`): the same
    column again, or the rows a filter kept of it (:func:`note_filter`), is not split again.
    """
    import numpy as np

    if not SHARE_WORDS:
        return _split(col, docs)
    m = _MEMO
    chunks = _chunks(col)
    key = _col_key(chunks)
    want = None if docs is None else np.asarray(docs, dtype=np.int64)
    have = None
    if m.bt is not None:
        if m.key == key:
            have = m.bt
        elif m.mask is not None:
            data, offsets = utf8_buffers(col)
            have = _derive(m.bt, m.mask, data, offsets)
    if have is not None:
        got = _select(
            have, np.arange(len(have.offsets) - 1, dtype=np.int64) if want is None else want
        )
        if got is not None:
            m.hits += 1
            if have is not m.bt:
                m.key, m.hold, m.bt, m.mask = key, chunks, have, None
            return got
    m.misses += 1
    m.key = m.hold = m.bt = m.mask = None  # free the last batch before splitting this one
    bt = _split(col, want)
    m.key, m.hold, m.bt = key, chunks, bt
    return bt


def _split(col: Any, docs: Any = None) -> BatchTokens:
    import numpy as np

    data, offsets = utf8_buffers(col)
    if docs is None:
        docs = np.arange(len(offsets) - 1, dtype=np.int64)
    else:
        docs = np.asarray(docs, dtype=np.int64)
    kn = _kernels()
    k = kn.k
    cs, ce, doc_c = k.chunk_bounds(data, offsets, docs)
    tok_s, tok_e, flag, doc_tok = k.split_chunks(
        data,
        cs,
        ce,
        doc_c,
        kn.ct,
        kn.special,
        kn.fl,
        kn.merge_pairs,
        *kn.units,
        *kn.currencies,
        kn.ctab,
        kn.cfill,
        kn.rep,
    )
    fb = np.flatnonzero(flag)
    if len(fb) == 0:
        return BatchTokens(data, offsets, docs, tok_s, tok_e, doc_tok, 0)
    # each distinct chunk once per batch; the cache (keyed by the chunk's 64-bit hash) keeps
    # them across batches
    fb_s = tok_s[fb]
    fb_e = tok_e[fb]
    fb_hash = k.hash_spans(data, fb_s, fb_e)
    uniq, first, inv = np.unique(fb_hash, return_index=True, return_inverse=True)
    cache = kn.fallback
    splitter = english_splitter()
    lens: list[int] = []
    u_off = np.zeros(len(uniq) + 1, dtype=np.int64)
    put_keys: list[int] = []
    put_vals: list[int] = []
    for j, (h, i) in enumerate(zip(uniq.tolist(), first.tolist(), strict=True)):
        got = cache.get(h)
        if got is None:
            text = bytes(data[fb_s[i] : fb_e[i]]).decode("utf-8")
            got = tuple(len(t.encode("utf-8")) for t in splitter.split_chunk(text))
            if len(cache) >= MAX_CACHE:
                evict_oldest(cache, 1)
            cache[h] = got
            if sum(got) <= 255 and len(got) <= 7:  # the kernel's cache takes it from here
                v = len(got)
                for t, ln in enumerate(got[:-1]):
                    v |= ln << (8 * (t + 1))
                put_keys.append(h | 1)
                put_vals.append(v)
        lens.extend(got)
        u_off[j + 1] = len(lens)
    if put_keys:
        k.cache_put(
            kn.ctab,
            kn.cfill,
            np.array(put_keys, dtype=np.uint64),
            np.array(put_vals, dtype=np.uint64),
        )
    out_s, out_e, out_doc = k.expand(
        tok_s, tok_e, flag, doc_tok, np.asarray(lens, dtype=np.int64), u_off, inv.astype(np.int64)
    )
    return BatchTokens(data, offsets, docs, out_s, out_e, out_doc, len(fb))


# ---------------------------------------------------------------------------------------------
# non-ASCII characters in the kernel: each as an ASCII stand-in that the rules cannot tell apart


def _rule_atoms(rules: dict[str, Any]) -> tuple[list[Any], dict[str, list[Any]]]:
    """Every single-character test (a literal, a class, a category) in the prefix, suffix and
    infix patterns, and per pattern its top-level alternatives (parsed)."""
    import re._parser as sre_parse  # type: ignore[import-not-found]
    from re import _constants as sc  # type: ignore[attr-defined]

    atoms: list[Any] = []
    seen: set[str] = set()

    def walk(sub: Any) -> None:
        for op, av in sub:
            if op in (sc.LITERAL, sc.NOT_LITERAL, sc.IN, sc.CATEGORY, sc.ANY):
                if repr((op, av)) not in seen:
                    seen.add(repr((op, av)))
                    atoms.append((op, av))
            elif op in (sc.MAX_REPEAT, sc.MIN_REPEAT):
                walk(av[2])
            elif op == sc.SUBPATTERN:
                walk(av[-1])
            elif op in (sc.ASSERT, sc.ASSERT_NOT):
                walk(av[1])
            elif op == sc.BRANCH:
                for alt in av[1]:
                    walk(alt)
            elif op != sc.AT:
                raise ValueError(f"unexpected regex node {op}")

    alts: dict[str, list[Any]] = {}
    for name in ("prefix", "suffix", "infix"):
        tree = sre_parse.parse(rules[name])
        walk(tree)
        top = list(tree)
        if len(top) == 2 and top[0] == (sc.AT, sc.AT_BEGINNING) and top[1][0] == sc.BRANCH:
            # sre factors the common "^" out: [^, BRANCH]; put it back into each alternative
            alts[name] = [[top[0], *alt] for alt in top[1][1][1]]
        elif len(top) == 1 and top[0][0] == sc.BRANCH:
            alts[name] = [list(alt) for alt in top[0][1][1]]
        else:
            alts[name] = [top]
    return atoms, alts


def nonascii_reps(rules: dict[str, Any]) -> dict[int, int]:
    """Code point -> printable ASCII byte (or 0x80: a letter with no stand-in) for the word
    kernel, derived from the vendored rules (``data/spacy_en_nonascii.json`` holds the result).

    A character ``c`` gets the stand-in ``r`` when the prefix, suffix and infix patterns cannot
    tell them apart: ``c`` and ``r`` pass the same single-character tests (every literal, class
    and category in the patterns, plus ``str.isalpha``/``isalnum``, ``[0-9]`` and the
    apostrophes the splitter's shortcuts read) -- or both occur as a bare literal only in
    one-character alternatives of the same patterns (``^c`` / ``c$``, as ``^r`` / ``r$``) and
    pass the same tests otherwise. Then every rule matches the same spans of a chunk and of the
    chunk with each ``c`` written ``r``. Only the URL pattern can still tell them apart (its host
    class is ``[A-Za-z0-9\u00a1-\uffff]``): the kernel hands back every non-ASCII chunk whose
    core would be tried as a URL, and checks special cases on the original bytes. Basic
    multilingual plane only; every stand-in is also checked by splitting short strings
    (:func:`check_reps`)."""
    import re

    import numpy as np
    import re._compiler as sre_compile  # type: ignore[import-not-found]
    import re._parser as sre_parse
    from re import _constants as sc  # type: ignore[attr-defined]

    atoms, alts = _rule_atoms(rules)
    state = sre_parse.State()
    state.flags = re.UNICODE
    regs = [sre_compile.compile(sre_parse.SubPattern(state, [a]), re.UNICODE) for a in atoms]
    regs += [re.compile("[0-9]"), re.compile("['\u2019]")]
    cps = list(range(0x21, 0x7F)) + [
        i for i in range(0x80, 0x10000) if not 0xD800 <= i < 0xE000 and not chr(i).isspace()
    ]
    chars = "".join(map(chr, cps))
    sig = np.zeros((len(cps), len(regs) + 2), dtype=bool)
    for j, rg in enumerate(regs):
        for m in rg.finditer(chars):
            sig[m.start(), j] = True
    sig[:, -2] = [c.isalpha() for c in chars]
    sig[:, -1] = [c.isalnum() for c in chars]
    lit_col = {av: j for j, (op, av) in enumerate(atoms) if op == sc.LITERAL}

    def literal_uses(code: int) -> tuple[str, ...] | None:
        """The alternatives where ``code`` is a bare literal, ``code`` written as a placeholder
        (sorted), or None when one of them could make the two characters differ: in the
        prefixes (first match wins) only ``^c`` is allowed, in the infixes nothing; every
        suffix alternative ends at ``$``, so there any shape is (equal starts, equal lengths)."""

        def shape(sub: Any) -> tuple[str, bool]:
            out, hit = [], False
            for op, av in sub:
                if op == sc.LITERAL and av == code:
                    out.append("C")
                    hit = True
                    continue
                kids = (
                    [av[2]] if op in (sc.MAX_REPEAT, sc.MIN_REPEAT)
                    else [av[-1]] if op == sc.SUBPATTERN
                    else [av[1]] if op in (sc.ASSERT, sc.ASSERT_NOT)
                    else av[1] if op == sc.BRANCH else []
                )  # fmt: skip
                parts = [shape(k) for k in kids]
                hit = hit or any(h for _, h in parts)
                out.append(f"{op}:{av if not kids else [p for p, _ in parts]}")
            return "|".join(out), hit

        uses: list[str] = []
        for name, options in alts.items():
            for alt in options:
                sh, hit = shape(alt)
                if not hit:
                    continue
                if name == "infix" or (
                    name == "prefix" and [o for o, _ in alt] != [sc.AT, sc.LITERAL]
                ):
                    return None
                uses.append(f"{name} {sh}")
        return tuple(sorted(uses))

    by_sig: dict[bytes, int] = {}
    for i in range(93, -1, -1):  # the lowest ASCII byte of each signature
        by_sig[sig[i].tobytes()] = cps[i]
    ascii_lits = {r: literal_uses(r) for r in range(0x21, 0x7F) if r in lit_col}
    reps: dict[int, int] = {}
    for i in range(94, len(cps)):
        c = cps[i]
        r = by_sig.get(sig[i].tobytes())
        if r is None and c in lit_col:
            uses = literal_uses(c)
            for r2, r_uses in ascii_lits.items() if uses is not None else ():
                if r_uses != uses:
                    continue
                v = sig[i].copy()
                v[lit_col[c]], v[lit_col[r2]] = v[lit_col[r2]], v[lit_col[c]]
                if np.array_equal(v, sig[r2 - 0x21]):
                    r = r2
                    break
        if r is not None:
            reps[c] = r
        elif sig[i, -2]:
            reps[c] = 0x80  # a letter: a chunk of letters only is one word (if no special case)
    return reps


def check_reps(splitter: EnglishWordSplitter, reps: dict[int, int], alphabet: str) -> list[str]:
    """Strings of up to 3 characters over ``alphabet`` plus each non-ASCII character with a
    stand-in, that split differently from the same string with the stand-in (none expected)."""
    import itertools

    by_rep: dict[int, list[int]] = {}
    for c, r in reps.items():
        if r != 0x80:
            by_rep.setdefault(r, []).append(c)
    bad: list[str] = []
    for r, cs in by_rep.items():
        base = [
            "".join(p) for n in (1, 2, 3) for p in itertools.product(alphabet + chr(r), repeat=n)
            if chr(r) in p
        ]  # fmt: skip
        want = [tuple(len(x) for x in splitter.split_chunk(s)) for s in base]
        for c in cs:
            for s, w in zip(base, want, strict=True):
                t = s.replace(chr(r), chr(c))
                if tuple(len(x) for x in splitter.split_chunk(t)) != w and not any(
                    k in splitter.specials for k in (*_substrings(t), *_substrings(s))
                ):  # special cases: the kernel checks them on the original bytes
                    bad.append(t)
    return bad


def _substrings(s: str) -> list[str]:
    return [s[i:j] for i in range(len(s)) for j in range(i + 1, len(s) + 1)]


def export_nonascii_reps(path: Path = REPS_PATH) -> int:
    """Write :func:`nonascii_reps` of the vendored rules as runs ``[first, last, byte]``."""
    reps = nonascii_reps(json.loads(RULES_PATH.read_text(encoding="utf-8")))
    runs: list[list[int]] = []
    for c in sorted(reps):
        if runs and runs[-1][1] == c - 1 and runs[-1][2] == reps[c]:
            runs[-1][1] = c
        else:
            runs.append([c, c, reps[c]])
    body = ",\n".join(json.dumps(r) for r in runs)
    path.write_text(
        '{"source": "python -m pipeline.filters.words --export (nonascii_reps of '
        'spacy_en_tokenizer.json)",\n"runs": [\n' + body + "\n]}\n",
        encoding="utf-8",
    )
    return len(reps)


def export_spacy_rules(path: Path = RULES_PATH) -> None:
    """Write spaCy's English tokenizer rules (the installed version) to ``path``."""
    import spacy
    from spacy.symbols import ORTH
    from spacy.tokenizer import Tokenizer

    tok = spacy.blank("en").tokenizer
    rules = {k: [t[ORTH] for t in v] for k, v in sorted(tok.rules.items()) if not k.isspace()}
    pattern: Callable[[Any], str] = lambda f: f.__self__.pattern  # noqa: E731
    # what spaCy's special-case matcher looks for: each special case containing affix
    # characters, as the tokenizer splits it without special cases
    bare = Tokenizer(
        tok.vocab,
        rules={},
        prefix_search=tok.prefix_search,
        suffix_search=tok.suffix_search,
        infix_finditer=tok.infix_finditer,
        url_match=tok.url_match,
    )
    matcher_patterns = {}
    for k in rules:
        if tok.prefix_search(k) or tok.suffix_search(k) or list(tok.infix_finditer(k)) or " " in k:
            toks = [t.text for t in bare(k)]
            if len(toks) > 1:
                matcher_patterns[k] = toks
    data = {
        "source": f"spaCy {spacy.__version__} blank('en') tokenizer "
        "(MIT licence, (c) ExplosionAI GmbH)",
        "prefix": pattern(tok.prefix_search),
        "suffix": pattern(tok.suffix_search),
        "infix": pattern(tok.infix_finditer),
        "url": pattern(tok.url_match),
        "special_cases": rules,
        "matcher_patterns": matcher_patterns,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, ensure_ascii=False, indent=0) + "\n", encoding="utf-8")


if __name__ == "__main__":
    if sys.argv[1:] == ["--export"]:
        export_spacy_rules()
        print(f"wrote {RULES_PATH}")
        print(f"wrote {REPS_PATH}: {export_nonascii_reps()} characters")
    else:
        print("usage: python -m pipeline.filters.words --export")
