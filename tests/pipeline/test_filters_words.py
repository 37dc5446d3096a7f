"""The numba batch splitter (``pipeline.filters.words.batch_tokens``) against the reference
splitter (``split_words``, itself checked against spaCy in test_filters_heuristics.py): the
same words, in the same order, on every document of real text and on strings built to hit
each ASCII rule the kernel writes out (prefixes, suffixes, units, infixes, URLs, specials)."""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import pyarrow as pa

from pipeline.filters.words import batch_tokens, split_words
from tests.conftest import read_jsonl_zst


def _same_words(texts: list[str]) -> list[int]:
    bt = batch_tokens(pa.array(texts, pa.large_string()))
    return [i for i, t in enumerate(texts) if bt.words(i) != split_words(t)]


def test_kernel_words_match_reference_on_real_docs(shared_data: Path):
    raw = read_jsonl_zst(shared_data / "pretrain_raw.jsonl.zst")
    texts = [d["text"] for d in random.Random(3).sample(raw, 400)]
    assert sum(map(len, texts)) > 2_000_000
    bt = batch_tokens(pa.array(texts, pa.large_string()))
    assert len(bt.tok_s) > 300_000
    assert bt.fallback_chunks < len(bt.tok_s) // 5  # the kernel, not Python, did most of it
    bad = [i for i, t in enumerate(texts) if bt.words(i) != split_words(t)]
    assert not bad, bad[:5]


def test_kernel_words_match_reference_on_rule_strings():
    # every string of up to 3 characters over an alphabet touching each ASCII rule, alone and
    # glued to a word, a number and a dot
    alphabet = "aZ0.,:;!?'\"`()[]{}<>_#*&%$+-~/=^@|\\sS"
    printable = [chr(i) for i in range(0x21, 0x7F)]
    shorts = ["".join(p) for n in (1, 2, 3) for p in itertools.product(alphabet, repeat=n)]
    shorts += ["".join(p) for p in itertools.product(printable, repeat=2)]  # every pair
    texts = []
    for i in range(0, len(shorts), 500):
        chunk = shorts[i : i + 500]
        for left, right in (("", ""), ("word", ""), ("", "word"), ("12", "34"), ("ab", "Cd"),
                            ("A", ""), ("AB", ""), ("x", "."), ("9", "")):  # fmt: skip
            texts.append(" ".join(left + s + right for s in chunk))
    texts += [
        "10km 5kmh 3mph 7m/s 9km/h 12MB 3GB 4% 5$ 6US$ 7C$ 100mbar 2hPa 3Pa 1T +5 5+ ++ +a",
        "U.S. e.g. i.e. a.m. 10a.m. p.m. Mr. Dr. etc. St. Jan. vs. U.K. A.B.C. abc.Def a..b",
        "example.com www.example.org/a?b=c http://x.y/z https://a.b.co:8080/p 1.2.3.4 10.0.0.1",
        "192.168.1.1 172.16.0.1 169.254.1.1 8.8.8.8:53 user@host.com a@b mailto:x@y.zz ab.cd",
        "can't won't don't It's it's I'm you're we've they'd 'tis 'cause ol' y'all cannot gonna",
        ":) :-( ;) <3 :P (: ): =) -_- ^_^ o.O :'( :-)) (-: 8) 8-) x.x 'em 'll 's 'S ''",
        "state-of-the-art a--b a---b a~b 1-2 1--2 1-a a-1 a,b 1,000 a:b a<b a>b a=b a/b 1/a",
        "....a a.... ...a... .a a. A. AB. ABC. aB. 5. 5.. %. -. +. (a.) [a.] 'a.' \"a.\" `a.`",
    ]
    bad = _same_words(texts)
    assert not bad, [texts[i][:80] for i in bad[:3]]


def test_kernel_handles_empty_nulls_and_selection():
    col = pa.array(["", None, "One two.", "   ", "x"], pa.large_string())
    bt = batch_tokens(col)
    assert [bt.words(i) for i in range(5)] == [[], [], ["One", "two", "."], [], ["x"]]
    sel = batch_tokens(col, [4, 2])
    assert [sel.words(0), sel.words(1)] == [["x"], ["One", "two", "."]]
    # a sliced Arrow array (non-zero offset) reads the right rows
    assert batch_tokens(col.slice(2, 1)).words(0) == ["One", "two", "."]


def test_url_kernel_matches_spacy_url_regex():
    # spaCy's url_match on random printable-ASCII strings built from URL pieces, and on
    # real-looking hosts, addresses and versions
    import numpy as np

    from pipeline.filters import _wordkernels as k
    from pipeline.filters.words import english_splitter

    url = english_splitter()._url
    rng = random.Random(5)
    pieces = ["a", "z", "A", "0", "1", "2", "5", "9", ".", ":", "/", "@", "-", "_", "?", "#",
              "+", "co", "org", "www", "http", "://", "10", "127", "172", "16", "192", "168",
              "169", "254", "255", "25", "22", "223", "224", "00", "8080", "x"]  # fmt: skip
    cases = ["".join(rng.choice(pieces) for _ in range(rng.randint(1, 9))) for _ in range(60000)]
    for _ in range(20000):  # URL-shaped: scheme, user, host, port, path, each maybe malformed
        host = rng.choice(["".join(rng.choice(pieces[:8] + ["-", "_", "co"]) for _ in range(3)),
                           ".".join(str(rng.choice([0, 1, 10, 99, 127, 172, 192, 223, 255, 256]))
                                    for _ in range(rng.choice([3, 4, 5])))])  # fmt: skip
        tld = rng.choice(["com", "io", "x", "org", "Co", "c0", ""])
        cases.append(
            rng.choice(["", "http://", "a://", "h+t-p.s://", "x@", "u:p@", "a@b@"])
            + host
            + (("." + tld) if tld else "")
            + rng.choice(["", ":80", ":1", ":123456", "/", "/a.b?c=d#e", "?q", ":8080/x", "."])
        )
    cases += ["example.com", "a.b.co:8080/p", "10.0.0.1", "10.0.0.1000", "100.0.0.1", "1.2.3.4",
              "172.16.0.1", "172.32.0.1", "169.254.1.1", "192.168.1.1", "8.8.8.8:53", "u@h.io",
              "x@y@z.com", "ab://c.de", "a://c.de", "1.14.0", "core1.85.0", "journald.conf",
              "a-b.c_d.ef", "-a.com", "a-.com", "www." + "a" * 64 + ".com", "a." + "b" * 64]  # fmt: skip
    data, offs = k.packed(tuple(cases))
    got = [k._url_match(data, offs[i], offs[i + 1]) for i in range(len(cases))]
    bad = [(c, g) for c, g in zip(cases, got, strict=True) if g != 2 and (g == 1) != bool(url(c))]
    assert not bad, bad[:10]
    assert sum(got) > 3000 and got.count(0) > 3000  # both outcomes are exercised
    assert np.all(np.array(got) != 2)


def test_numpy_table_hashes_equal_the_kernel_hash():
    import numpy as np

    from pipeline.filters import _wordkernels as k
    from pipeline.filters.words import hash_strings

    strings = ("", "a", "can't", "naïve", "日本語", "x" * 40, "’s", ":)")
    assert np.array_equal(hash_strings(strings), k.hash_strings(*k.packed(strings)))
    assert len(set(hash_strings(strings).tolist())) == len(strings)


def _line_and_char_reference(text: str) -> tuple[list[int], list[int]]:
    """What datatrove computes with ``re``/``str`` for the repetition and quality kernels."""
    import re

    from pipeline.filters.heuristics import find_duplicates

    if not text:
        rep = [0] * 7
    else:
        paras = re.split(r"\n{2,}", text.strip())
        lines = re.split("\n+", text)
        rep = [len(text), len(paras), *find_duplicates(paras), len(lines), *find_duplicates(lines)]
    counts = [
        text.count("#"),
        text.count("...") + text.count("…"),
        text.count("•") + text.count("-"),
        len(text.splitlines()),
    ]
    return rep, counts


def test_line_and_char_count_kernels_match_python(raw_docs: list[dict]):
    import numpy as np

    from pipeline.filters import _wordkernels as k
    from pipeline.filters.words import utf8_buffers

    rnd = random.Random(5)
    alphabet = "ab \n\n\r.-#•…\x85\u2028\u2029\x0b\x1c\u3000\xa0é🙂"
    texts = [d["text"] for d in raw_docs[:300]] + [
        "",
        " ",
        "\n\n\n",
        "a\n\nb\n\na",
        "a\r\n\r\nb",
        "\u3000a\n\n a \u3000",
        "🙂\n\n🙂",
        "x\x85",
    ]
    texts += ["".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 24))) for _ in range(4000)]
    for typ in (pa.string(), pa.large_string()):
        data, offsets = utf8_buffers(pa.array(texts, typ))
        docs = np.arange(len(texts), dtype=np.int64)
        rep = k.repetition_lines(data, offsets, docs).tolist()
        counts = k.char_counts(data, offsets, docs).tolist()
        bad = [
            (t[:40], r, c, _line_and_char_reference(t))
            for t, r, c in zip(texts, rep, counts, strict=True)
            if (r, c) != _line_and_char_reference(t)
        ]
        assert not bad, bad[:3]
    # a repeated paragraph is a repeat only when byte-identical, not on a hash alone
    data, offsets = utf8_buffers(pa.array(["ab\n\nab\n\nba\n\nab "], pa.string()))
    assert k.repetition_lines(data, offsets, np.arange(1)).tolist()[0][1:4] == [4, 2, 4]


def test_vendored_nonascii_stand_ins_are_the_rules():
    # the table the kernel loads is what the vendored rules give (regenerate: --export)
    from pipeline.filters.words import REPS_PATH, RULES_PATH, export_nonascii_reps

    import json
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "reps.json"
        export_nonascii_reps(out)
        assert json.loads(out.read_text()) == json.loads(REPS_PATH.read_text())
    assert json.loads(RULES_PATH.read_text())  # the rules the table came from


def test_kernel_splits_non_ascii_chunks_as_the_reference():
    # one character of each kind of stand-in (accented and Cyrillic letters, curly quotes and
    # apostrophes, guillemets, CJK punctuation and letters, a pilcrow), glued to the rule
    # alphabet: the kernel splits them itself (no fallback) and gives the reference's words
    from pipeline.filters import words

    kinds = "éÉжЖüΩ“”‘’«»，：（）¶中日"
    alphabet = "aZ0.,'\"-(:!s"
    pairs = ["".join(p) for p in itertools.product(alphabet + kinds, repeat=2)]
    triples = [  # one non-ASCII character among two of the alphabet, at each place
        s[:i] + k + s[i:] for k in kinds for s in map("".join, itertools.product(alphabet, repeat=2))
        for i in range(3)
    ]  # fmt: skip
    shorts = [s for s in kinds + "".join(pairs) if s] + pairs + triples
    texts = []
    for i in range(0, len(shorts), 500):
        chunk = shorts[i : i + 500]
        for left, right in (("", ""), ("word", ""), ("12", "ab"), ("“", "”")):
            texts.append(" ".join(left + s + right for s in chunk))
    texts += [
        "naïve café “quoted” ‘single’ it’s «guillemets» ¶ Linux内核管理风格¶ 1）决策¶ Ωmega",
        "Ж.Ж. é.e. “U.S.” don’t can’t won’t ’tis (“a”) —dash— 因此，如果 x…y a.é b.Ж",
    ]
    bt = words.batch_tokens(pa.array(texts, pa.large_string()))
    bad = [i for i, t in enumerate(texts) if bt.words(i) != split_words(t)]
    assert not bad, [texts[i][:80] for i in bad[:3]]
    # without CJK letters (no stand-in) and dots (URL candidates), the kernel splits them
    plain = [t for t in triples if "中" not in t and "日" not in t and "." not in t]
    bt = words.batch_tokens(pa.array([" ".join(plain)], pa.large_string()))
    assert bt.words(0) == split_words(" ".join(plain))
    assert bt.fallback_chunks < len(plain) // 10, (bt.fallback_chunks, len(plain))


def test_nonascii_stand_ins_split_like_their_ascii_byte():
    # the stand-in argument checked by splitting: a sample of the mapped characters in every
    # string of up to 3 characters over a small alphabet splits like the stand-in does
    import json

    from pipeline.filters.words import REPS_PATH, check_reps, english_splitter

    reps: dict[int, int] = {}
    for first, last, byte in json.loads(REPS_PATH.read_text())["runs"]:
        if byte != 0x80:
            for c in (first, last):
                reps[c] = byte
    sample = dict(random.Random(0).sample(sorted(reps.items()), 24))
    sample.update({ord(c): reps[ord(c)] for c in "’“¶，é" if ord(c) in reps})
    assert len(set(sample.values())) >= 4
    assert not check_reps(english_splitter(), sample, "aZ0.'s-,")
