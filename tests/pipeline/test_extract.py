"""extract.html on real pages: main text comes out; bad bodies are dropped, with a reason."""

from __future__ import annotations

import random
from pathlib import Path

import pyarrow as pa
import pytest

from pipeline.extract import HtmlExtractStage, decode_html, looks_binary
from pipeline.stage import StageContext


def _warc_pages(path: Path, limit: int) -> list[tuple[str, bytes]]:
    from fastwarc.warc import ArchiveIterator, WarcRecordType

    out = []
    with open(path, "rb") as f:
        for rec in ArchiveIterator(f, record_types=WarcRecordType.response):
            out.append((rec.headers.get("WARC-Target-URI"), rec.reader.read()))
            if len(out) >= limit:
                break
    return out


@pytest.fixture(scope="module")
def pages(shared_data: Path) -> list[tuple[str, bytes]]:
    return _warc_pages(shared_data / "warc" / "debian-docs-00000.warc.gz", 60)


def _table(urls: list[str | None], html: list, html_type: pa.DataType | None = None) -> pa.Table:
    n = len(html)
    return pa.table(
        {
            "doc_id": [f"d{i}" for i in range(n)],
            "text": pa.array([""] * n, pa.large_string()),
            "source": ["test"] * n,
            "url": urls,
            "html": pa.array(html, html_type or pa.large_binary()),
        }
    )


def test_real_pages_give_main_text(pages):
    stage = HtmlExtractStage()
    stage.setup()
    ctx = StageContext("extract.html")
    out = stage.process(_table([u for u, _ in pages], [b for _, b in pages]), ctx)
    assert out.num_rows >= len(pages) - 2  # a near-empty index page may legitimately go
    assert "html" not in out.column_names
    assert out.schema.field("text").type == pa.large_string()
    texts = out.column("text").to_pylist()
    assert all(t and t == t.strip() for t in texts)
    assert sum(map(len, texts)) > 50_000
    assert not any("<div" in t or "</p>" in t for t in texts)
    assert ctx.counters["extracted_chars"] == sum(map(len, texts))


def test_main_content_drops_boilerplate_and_keep_html(pages):
    url, body = max(pages, key=lambda p: len(p[1]))
    full = HtmlExtractStage({"main_content": False}).extract_one(body)[0]
    main = HtmlExtractStage().extract_one(body)[0]
    assert full and main and len(main) <= len(full)
    out = HtmlExtractStage({"keep_html": True}).process(_table([url], [body]), StageContext("x"))
    assert out.column("html").to_pylist() == [body]


def test_string_html_from_jsonl(pages):
    url, body = pages[3]
    as_str = decode_html(body)
    out = HtmlExtractStage().process(_table([url], [as_str], pa.string()), StageContext("x"))
    assert out.column("text").to_pylist() == [HtmlExtractStage().extract_one(body)[0]]


def test_encoding_detection_reads_legacy_encodings(shared_data):
    from tests.conftest import read_jsonl_zst

    paras = {
        d["label"]: d["text"]
        for d in read_jsonl_zst(shared_data / "langid_dev.jsonl.zst", limit=20_000)
    }
    cases = [("de", "cp1252"), ("fr", "cp1252"), ("ja", "shift_jis"), ("ru", "koi8-r")]
    for lang, enc in cases:
        text = paras[lang]
        for meta in (f"<meta charset='{enc}'>", ""):  # declared, then detected by uchardet
            html = f"<html><head>{meta}<title>t</title></head><body><p>{text}</p></body></html>"
            out, reason = HtmlExtractStage().extract_one(html.encode(enc))
            assert reason is None
            if meta or lang != "ja":
                assert out == text.strip(), (lang, enc, meta)
    html = f"<html><body><p>{paras['de']}</p></body></html>"
    assert HtmlExtractStage().extract_one(html.encode("utf-16")) == (paras["de"].strip(), None)


def test_garbage_never_raises_and_is_dropped_with_reasons(pages):
    rng = random.Random(0)
    png = b"\x89PNG\r\n\x1a\n" + bytes(rng.randrange(256) for _ in range(3000))
    gz = b"\x1f\x8b\x08\x00" + bytes(rng.randrange(256) for _ in range(2000))
    real = pages[0][1]
    cases = [
        (None, "empty_html"),
        (b"", "empty_html"),
        (b"   \n\t ", "empty_html"),
        (png, "binary_content"),
        (gz, "binary_content"),
        (bytes(rng.randrange(256) for _ in range(5000)), "binary_content"),
        (b"\xff\xfe\xfa<html><body>\x00\x00\x00</body>", "binary_content"),  # invalid UTF-8, NULs
        (
            b"<html><body><script>var x = 1;</script><style>p{}</style></body></html>",
            "empty_extraction",
        ),
        (b"<html>" + b"<div>" * 20_000, "empty_extraction"),  # 20,000 levels deep: fast, not 40 s
        (real[: len(real) // 3], "empty_extraction"),  # cut inside <head>
        (b"<<<<>>>></////>", None),  # malformed, but that is its text
        (real[: 2 * len(real) // 3], None),  # truncated real page: its text survives
    ]
    stage = HtmlExtractStage()
    for body, reason in cases:
        text, got = stage.extract_one(body)
        assert got == reason, (body[:40] if body else body, got)
        assert (text is None) == (reason is not None)
    ctx = StageContext("extract.html")
    out = stage.process(_table([None] * len(cases), [b for b, _ in cases]), ctx)
    assert out.num_rows == 2
    assert ctx.counters["dropped"] == len(cases) - 2
    assert ctx.counters["dropped.empty_html"] == 3
    assert ctx.counters["dropped.binary_content"] == 4
    assert ctx.counters["dropped.empty_extraction"] == 3


def test_min_chars_and_looks_binary():
    page = b"<html><body><p>Short.</p></body></html>"
    assert HtmlExtractStage().extract_one(page) == ("Short.", None)
    assert HtmlExtractStage({"min_chars": 50}).extract_one(page) == (None, "empty_extraction")
    assert looks_binary("\x00\x01\x02" * 100)
    assert not looks_binary("<html><body>plain text, ünïcödé, 日本語</body></html>")


def test_looks_binary_counts_exactly_the_control_characters(pages):
    """The regex count gives the same decision as counting ``ch in _CONTROL`` one by one, at the
    10% boundary too, and the whitespace test is ``not x.strip()`` without the copy."""
    from pipeline.extract import _BINARY_PROBE_CHARS, _CONTROL

    def slow(text: str) -> bool:
        probe = text[:_BINARY_PROBE_CHARS]
        return bool(probe) and sum(1 for ch in probe if ch in _CONTROL) / len(probe) > 0.10

    rng = random.Random(1)
    texts = [decode_html(body) for _, body in pages]
    alphabet = sorted(_CONTROL) + list("\t\n\r\f\v <a>é日") + ["\x1c", "\x80", "\u2028"]
    for n_bad in (0, 40, 409, 410, 411, 4096):  # around 10% of the 4,096-char probe
        chars = [rng.choice(sorted(_CONTROL)) for _ in range(n_bad)] + ["x"] * (4096 - n_bad)
        rng.shuffle(chars)
        texts.append("".join(chars) + "\x00" * 900)  # past the probe: not counted
    for c in sorted(_CONTROL):  # each control character counts
        texts.append(c * 410 + "x" * 3686)
    texts += ["".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 6000))) for _ in range(200)]
    decisions = [looks_binary(t) for t in texts]
    assert decisions == [slow(t) for t in texts]
    assert True in decisions and False in decisions
    for x in ["", " ", "\x1c\u2028\u3000 ", " a ", "\x00", b"", b" \t\x0b\x0c\r\n", b"\x1c", b" a"]:
        assert (not x or x.isspace()) == (not x.strip())


def test_trafilatura_engine(pages):
    pytest.importorskip("trafilatura")
    stage = HtmlExtractStage({"engine": "trafilatura"})
    stage.setup()
    texts = [stage.extract_one(b)[0] for _, b in pages[:5]]
    assert sum(1 for t in texts if t) >= 3
    assert stage.extract_one(b"\x00\x01garbage" * 100)[1] == "binary_content"


def test_missing_html_column_says_what_to_do():
    table = pa.table({"doc_id": ["a"], "text": ["x"], "source": ["s"], "url": [None]})
    with pytest.raises(ValueError, match="needs raw HTML"):
        HtmlExtractStage().process(table, StageContext("x"))


def _plain_extract(body: bytes) -> tuple[str | None, str | None]:
    """extract.html's decisions written the plain way (the spaced 257-level selector, the whole
    page's ``<`` counted, ``strip()`` copies): the reference for the stage's cheaper checks."""
    from resiliparse.extract.html2text import extract_plain_text
    from resiliparse.parse.html import HTMLTree

    from pipeline.extract import _BINARY_PROBE_CHARS, _CONTROL, _MAX_DEPTH

    if not body.strip():
        return None, "empty_html"
    page = decode_html(body)
    if not page.strip():
        return None, "empty_html"
    probe = page[:_BINARY_PROBE_CHARS]
    if sum(1 for ch in probe if ch in _CONTROL) / len(probe) > 0.10:
        return None, "binary_content"
    tree = HTMLTree.parse(page)
    deep = page.count("<") > _MAX_DEPTH and tree.document.query_selector(" > ".join(["*"] * (_MAX_DEPTH + 1)))
    text = extract_plain_text(tree, main_content=not deep).strip()
    return (text, None) if text else (None, "empty_extraction")


def test_same_texts_and_reasons_as_the_plain_checks_on_the_committed_sample():
    """Every page of examples/data's two WARC files (378) extracts to the same text as the plain
    reference; and the nesting guard switches at the same depth: html > body > 253 <div>s > p
    keeps the main-content pass (the <nav> is dropped), 254 (a 257-element chain) turn it off."""
    from pipeline.readers import ReaderOptions, read_shard
    from tests.conftest import EXAMPLES

    bodies = []
    for f in sorted(EXAMPLES.glob("debian-docs-sample-*.warc.gz")):
        for t in read_shard(f, ReaderOptions()):
            if isinstance(t, pa.Table):
                bodies += t.column("html").to_pylist()
    stage = HtmlExtractStage()
    assert len(bodies) == 378
    assert [stage.extract_one(b) for b in bodies] == [_plain_extract(b) for b in bodies]

    def nested(k: int) -> bytes:  # the tags at the end, past the first 32 KB the stage counts first
        return (b"<html><body><nav><a href='/'>Home</a> <a href='/x'>Menu</a></nav>" + b"x " * 20_000
                + b"<div>" * k + b"<p>The main text of the page.</p>" + b"</div>" * k + b"</body></html>")

    for k, main in ((253, True), (254, False)):
        text, reason = stage.extract_one(nested(k))
        assert reason is None and ("Home" not in text) == main, k
        assert (text, reason) == _plain_extract(nested(k))
