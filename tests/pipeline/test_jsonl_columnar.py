"""The column-wise JSONL path (pyarrow's JSON reader a batch at a time) gives exactly what the
per-line path gives: the same tables (values, types, column order, batch boundaries) and the
same quarantined records in the same order, on clean real text and on every kind of line the
per-line path treats specially."""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

import pyarrow as pa
import pytest
import zstandard

from pipeline import readers
from pipeline.readers import Quarantined, ReaderOptions, read_shard

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


def _real_texts(n: int) -> list[str]:
    with open(DATA / "pretrain_raw.jsonl.zst", "rb") as f:
        r = io.TextIOWrapper(zstandard.ZstdDecompressor().stream_reader(f), encoding="utf-8")
        out = []
        for line in r:
            out.append(json.loads(line)["text"][:1500])
            if len(out) >= n:
                break
    return out


def _read(path: Path, columnar: bool, monkeypatch: pytest.MonkeyPatch, **kw):  # type: ignore[no-untyped-def]
    monkeypatch.setattr(readers, "JSONL_COLUMNAR", columnar)
    return list(read_shard(str(path), ReaderOptions(**kw)))


def _ipc(t: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, t.schema) as w:
        w.write_table(t.combine_chunks())
    return sink.getvalue().to_pybytes()


def _same(a: list, b: list) -> None:  # type: ignore[type-arg]
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert type(x) is type(y)
        if isinstance(x, pa.Table):
            assert x.schema == y.schema
            assert _ipc(x) == _ipc(y)  # bit for bit (a NaN is not equal to itself)
        else:
            assert x == y


def _write(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"".join(lines))
    return path


def _lines(texts: list[str], make) -> list[bytes]:  # type: ignore[no-untyped-def]
    return [(json.dumps(make(i, t)) + "\n").encode() for i, t in enumerate(texts)]


CLEAN = {
    "int_ids": lambda i, t: {"id": i, "text": t},
    "str_ids_and_meta": lambda i, t: {"meta": "m", "id": f"d{i}", "text": t, "score": i / 7, "ok": i % 2 == 0},
    "no_id_url": lambda i, t: {"url": f"https://x.example/{i}", "text": t},
    "no_id_no_url": lambda i, t: {"text": t, "lang": "en"},
    "empty_url": lambda i, t: {"url": "" if i % 3 else f"u{i}", "text": t},
    "doc_id_given": lambda i, t: {"doc_id": f"given{i}" if i % 4 else "", "id": i, "text": t},
    "source_str": lambda i, t: {"source": "web" if i % 2 else "", "text": t, "id": i},
    "source_int": lambda i, t: {"source": i, "text": t, "id": i},
    "text_not_last": lambda i, t: {"text": t, "url": f"u{i}", "id": str(i), "z": 1.5},
    "non_ascii_raw": lambda i, t: {"id": i, "text": t + " émoji 😀 \u2028 \x7f"},
}


@pytest.mark.parametrize("kind", sorted(CLEAN))
def test_columnar_equals_per_line_on_clean_real_text(tmp_path: Path, kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    texts = _real_texts(700)
    lines = _lines(texts, CLEAN[kind])
    if kind == "non_ascii_raw":  # raw UTF-8 (not \\u escapes) as other writers produce it
        lines = [(json.dumps(json.loads(ln), ensure_ascii=False) + "\n").encode() for ln in lines]
    p = _write(tmp_path / "in.jsonl", lines)
    slow = _read(p, False, monkeypatch, batch_size=256)
    fast = _read(p, True, monkeypatch, batch_size=256)
    _same(slow, fast)
    assert sum(t.num_rows for t in fast) == 700
    # the columnar path really ran (it is what makes the command fast)
    calls = []
    orig = readers._jsonl_block
    monkeypatch.setattr(readers, "_jsonl_block", lambda *a: calls.append(1) or orig(*a))
    assert _read(p, True, monkeypatch, batch_size=256) and calls


BAD_LINES = [
    b"\n",
    b"   \n",
    b'{"id": 1, "text": "broken\n',
    b'[1, 2]\n',
    b'{"id": 2}\n',
    b'{"id": 3, "text": 5}\n',
    b'{"id": 4, "text": "bad utf8 \xff"}\n',
    b'{"id": 5, "text": "lone \\ud800 surrogate"}\n',
    b'{"id": 6, "text": "pair \\ud83d\\ude00 ok"}\n',
    b'\xef\xbb\xbf{"id": 7, "text": "bom"}\n',
    b'{"id": 8, "text": "a"} {"id": 9, "text": "b"}\n',
    b'{"id": 10, "text": "dup", "text": "key"}\n',
    b'{"id": 11, "text": "nested", "m": {"a": [1]}}\n',
    b'{"id": 12, "text": "null meta", "m": null}\n',
    b'{"id": 13, "text": "when", "t": "2020-01-01 00:00:00"}\n',
    b'{"id": 123456789012345678901234, "text": "big int id"}\n',
    b'{"id": 14, "text": "big int value", "v": 123456789012345678901234}\n',
    b'{"id": 15.0, "text": "float id"}\n',
    b'{"id": 16, "text": "nan", "v": NaN}\n',
    b'{"id": "x", "text": "mixed id type"}\n',
    b'{"text": "no id at all"}\n',
    b'{"id": 17, "text": "crlf"}\r\n',
    b'{"id": 18, "text": "tab\tinside"}\n',
    b'{"id": 19, "text": "extra"} x\n',
    b'{"id": 20, "text": "x", "input.source": "a", "source": 3}\n',
]


@pytest.mark.parametrize("batch", [1, 7, 64])
@pytest.mark.parametrize("compress", ["", ".gz"])
def test_columnar_equals_per_line_with_bad_lines(tmp_path: Path, batch: int, compress: str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    texts = _real_texts(300)
    good = _lines(texts, CLEAN["int_ids"])
    lines: list[bytes] = []
    for i, g in enumerate(good):  # bad lines spread over clean runs longer than a batch
        lines.append(g)
        if i % 11 == 5:
            lines.append(BAD_LINES[(i // 11) % len(BAD_LINES)])
    lines += BAD_LINES
    lines.append(b'{"id": 99, "text": "last line without newline"}')
    raw = b"".join(lines)
    p = tmp_path / f"in.jsonl{compress}"
    p.write_bytes(gzip.compress(raw) if compress else raw)
    slow = _read(p, False, monkeypatch, batch_size=batch)
    fast = _read(p, True, monkeypatch, batch_size=batch)
    _same(slow, fast)
    reasons = {q.reason.split(":")[0] for q in slow if isinstance(q, Quarantined)}
    assert {"invalid_json", "invalid_utf8", "missing_text", "not_an_object"} <= reasons
    # an unpaired surrogate escape cannot become UTF-8: quarantined, not a crash
    assert any("unpaired surrogate" in q.reason for q in slow if isinstance(q, Quarantined))


def test_columnar_equals_per_line_on_too_large_and_truncated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    texts = _real_texts(200)
    lines = _lines(texts, CLEAN["str_ids_and_meta"])
    lines.insert(50, (json.dumps({"id": "big", "text": "x" * 5000}) + "\n").encode())
    p = tmp_path / "in.jsonl.gz"
    p.write_bytes(gzip.compress(b"".join(lines))[:-40])  # truncated stream
    for batch in (16, 1000):
        slow = _read(p, False, monkeypatch, batch_size=batch, max_doc_bytes=4000)
        fast = _read(p, True, monkeypatch, batch_size=batch, max_doc_bytes=4000)
        _same(slow, fast)
        reasons = [q.reason.split(":")[0] for q in slow if isinstance(q, Quarantined)]
        assert "too_large" in reasons and "truncated_or_corrupt_stream" in reasons


def test_columnar_equals_per_line_on_split_parts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    texts = _real_texts(250)
    lines = _lines(texts, CLEAN["no_id_no_url"])
    lines.insert(30, b"\n")  # a blank line shifts later line numbers (the ids use them)
    p = _write(tmp_path / "in.jsonl", lines)
    for part in [(0, 3), (2, 3)]:
        res = []
        for columnar in (False, True):
            monkeypatch.setattr(readers, "JSONL_COLUMNAR", columnar)
            res.append(list(read_shard(str(p), ReaderOptions(batch_size=32), part)))
        _same(*res)
