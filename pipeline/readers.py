"""Readers: WARC/WET, JSONL (.gz, .zst) and Parquet shards -> Arrow tables of documents.

Every reader streams (bounded memory: one batch of ``batch_size`` documents at a time) and
never raises on bad data. A malformed record (broken JSON line, invalid UTF-8, a WARC record
with a broken header, a document over ``max_doc_bytes``) or a malformed file (truncated
compressed stream, a Parquet file with the wrong schema, an unreadable file) becomes a
:class:`Quarantined` item with a reason and the raw bytes, and reading goes on where it can.
So for every shard: records read = documents yielded + records quarantined.
"""

from __future__ import annotations

import gzip
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import xxhash

from pipeline import schema, storage
from pipeline.storage import Loc

#: raw bytes kept per quarantined record (the rest is cut; the location still points at it)
QUARANTINE_RAW_LIMIT = 1 << 20


@dataclass(frozen=True)
class ReaderOptions:
    format: str = "auto"
    text_field: str = "text"
    id_field: str = "id"
    url_field: str = "url"
    source: str | None = None
    max_doc_bytes: int = 8 * 1024 * 1024
    batch_size: int = 1000


@dataclass(frozen=True)
class Quarantined:
    location: str
    reason: str
    raw: bytes = b""


ReadItem = pa.Table | Quarantined


def detect_format(path: Loc) -> str:
    name = path.name.lower()
    for suffix in (".gz", ".zst", ".zstd"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    if name.endswith((".warc", ".wet", ".arc")):
        return "warc"
    if name.endswith((".jsonl", ".json", ".ndjson")):
        return "jsonl"
    if name.endswith(".parquet"):
        return "parquet"
    raise ValueError(
        f"cannot tell the format of {str(path)!r} from its name; set input.format to warc, jsonl or parquet"
    )


def open_decompressed(path: Loc) -> BinaryIO:
    """Open a file (local or any storage URL), decompressing .gz and .zst transparently (streaming)."""
    name = path.name.lower()
    raw = storage.open_input(path)
    if name.endswith(".gz"):
        gz = gzip.GzipFile(fileobj=raw, mode="rb")
        gz.myfileobj = raw  # type: ignore[attr-defined]  # closed with it, as gzip.open does
        return gz  # type: ignore[return-value]
    if name.endswith((".zst", ".zstd")):
        return io.BufferedReader(_ZstdStream(raw), buffer_size=1 << 20)  # type: ignore[return-value]
    return raw


class _ZstdStream(io.RawIOBase):
    """Streaming zstd decompression that notices truncation.

    zstandard's ``stream_reader`` returns a clean EOF when the input stops mid-frame, so a cut
    file would look complete; this reader raises ``EOFError`` instead (like ``gzip``), after
    handing out everything that could be decompressed. Multi-frame files are read through.
    """

    def __init__(self, fh: BinaryIO):
        import zstandard

        self._zstd = zstandard
        self._fh = fh
        self._d = zstandard.ZstdDecompressor().decompressobj()
        self._buf = b""
        self._in_frame = False

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        while not self._buf:
            chunk = self._fh.read(1 << 20)
            if not chunk:
                if self._in_frame:
                    raise EOFError("zstd stream ended before the end of its frame (truncated file)")
                return 0
            while chunk:
                self._in_frame = True
                self._buf += self._d.decompress(chunk)
                if self._d.eof:
                    self._in_frame = False
                    chunk = self._d.unused_data
                    self._d = self._zstd.ZstdDecompressor().decompressobj()
                else:
                    chunk = b""
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n

    def close(self) -> None:
        self._fh.close()
        super().close()


Part = tuple[int, int]


def read_shard(path: Loc | str, opts: ReaderOptions, part: Part = (0, 1)) -> Iterator[ReadItem]:
    """Yield document tables and quarantined records from one input file.

    ``part = (k, n)`` reads only records k, k+n, k+2n… of the file (in file order), so one file
    can be n shards; problems of the file as a whole (truncation, a broken WARC record between
    records, a wrong schema) are reported by part 0 alone, so every record and every problem
    is counted exactly once across the n parts.
    """
    path = storage.as_loc(path)
    fmt = opts.format if opts.format != "auto" else detect_format(path)
    if fmt == "warc":
        yield from _read_warc(path, opts, part)
    elif fmt == "jsonl":
        yield from _read_jsonl(path, opts, part)
    elif fmt == "parquet":
        yield from _read_parquet(path, opts, part)
    else:  # pragma: no cover - guarded by the spec's Literal
        raise ValueError(f"unknown input format {fmt!r}")


def read_table(path: str | Path, **kw: Any) -> pa.Table:
    """Read a small file fully into one table (tests, tools). Quarantined records are skipped."""
    opts = ReaderOptions(**kw)
    tables = [t for t in read_shard(storage.as_loc(path), opts) if isinstance(t, pa.Table)]
    if not tables:
        return pa.table({f.name: pa.array([], f.type) for f in schema.REQUIRED_FIELDS})
    return pa.concat_tables(tables, promote_options="permissive")


# -- rows -> table -------------------------------------------------------------------------------


class _RowBuffer:
    """Collects document rows and emits Arrow tables of ``batch_size`` rows."""

    def __init__(self, opts: ReaderOptions, default_source: str):
        self.opts = opts
        self.source = opts.source or default_source
        self.rows: list[dict[str, Any]] = []

    def add(self, row: dict[str, Any]) -> pa.Table | None:
        self.rows.append(row)
        if len(self.rows) >= self.opts.batch_size:
            return self.flush()
        return None

    def flush(self) -> pa.Table | None:
        if not self.rows:
            return None
        rows, self.rows = self.rows, []
        return schema.normalize_required(rows_to_table(rows))


def rows_to_table(rows: list[dict[str, Any]]) -> pa.Table:
    """Rows -> table; a passthrough field whose values mix types (an ``id`` that is an int here
    and a string there) becomes a string column (JSON text for non-strings) instead of failing."""
    try:
        return pa.Table.from_pylist(rows)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError):
        pass
    names: dict[str, None] = {}
    for r in rows:
        names.update(dict.fromkeys(r))
    cols = {}
    for name in names:
        values = [r.get(name) for r in rows]
        try:
            cols[name] = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError):
            cols[name] = pa.array(
                [v if v is None or isinstance(v, str) else json.dumps(v, default=str) for v in values], pa.string()
            )
    return pa.table(cols)


def _record_to_row(rec: dict[str, Any], text: str, key: str, opts: ReaderOptions, source: str) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for k, v in rec.items():
        if k == opts.text_field:
            continue
        if k in (schema.SOURCE,) and not isinstance(v, str):
            k = f"input.{k}"
        row[k] = v
    url = rec.get(opts.url_field)
    row[schema.URL] = url if isinstance(url, str) else None
    if opts.url_field != schema.URL and opts.url_field in row:
        pass  # keep the original field too; it passes through
    doc_id = rec.get(schema.DOC_ID)
    row[schema.DOC_ID] = doc_id if isinstance(doc_id, str) and doc_id else schema.make_doc_id(key, text)
    src = rec.get(schema.SOURCE)
    row[schema.SOURCE] = src if isinstance(src, str) and src else source
    row[schema.TEXT] = text
    return row


# -- JSONL ------------------------------------------------------------------------------------------


#: parse JSONL a batch at a time with pyarrow's JSON reader where that gives exactly what the
#: per-line path gives (see :func:`_jsonl_block`); ``False``: per line only (tests compare both)
JSONL_COLUMNAR = True


def _read_jsonl(path: Loc, opts: ReaderOptions, part: Part = (0, 1)) -> Iterator[ReadItem]:
    """Records of a JSONL file, in batches of ``opts.batch_size`` documents.

    Lines are collected until they would complete the current batch; a full batch (or the
    file's last, with nothing buffered) is parsed column-wise when :func:`_jsonl_block` can
    (clean, flat, uniformly typed records), else line by line (:func:`_jsonl_line`: the
    quarantine reasons). Both give the same tables, batch boundaries and quarantine order.
    """
    buf = _RowBuffer(opts, path.name)
    k, n = part
    lineno = 0
    record = -1
    pending: list[tuple[int, bytes]] = []  # (line number, line) of records not yet parsed
    try:
        fh = open_decompressed(path)
    except OSError as e:
        if k == 0:
            yield Quarantined(str(path), f"unreadable_file: {e}")
        return

    def by_line() -> Iterator[ReadItem]:
        for ln, ln_bytes in pending:
            yield from _jsonl_line(buf, path, opts, ln, ln_bytes)
        pending.clear()

    def block(at_end: bool) -> Iterator[ReadItem]:
        if JSONL_COLUMNAR and pending and not buf.rows and (at_end or len(pending) == opts.batch_size):
            t = _jsonl_block(pending, path, opts, buf.source)
            if t is not None:
                pending.clear()
                yield t
                return
        yield from by_line()

    with fh:
        while True:
            try:
                line = fh.readline()
            except Exception as e:  # EOFError, OSError, BadGzipFile, zstandard.ZstdError...
                yield from by_line()
                if k == 0:
                    yield Quarantined(f"{path}:{lineno + 1}", f"truncated_or_corrupt_stream: after {lineno} lines: {e}")
                break
            if not line:
                yield from block(at_end=True)
                break
            lineno += 1
            if not line.strip():
                continue
            record += 1
            if record % n != k:
                continue
            if len(line) > opts.max_doc_bytes:  # never held: quarantined in its place
                yield from by_line()
                yield from _jsonl_line(buf, path, opts, lineno, line)
                continue
            pending.append((lineno, line))
            if len(pending) >= opts.batch_size - len(buf.rows):
                yield from block(at_end=False)
    last = buf.flush()
    if last is not None:
        yield last


def _jsonl_line(buf: _RowBuffer, path: Loc, opts: ReaderOptions, lineno: int, line: bytes) -> Iterator[ReadItem]:
    """One JSONL record, parsed on its own: a quarantined item, or a row (and a full batch)."""
    loc = f"{path}:{lineno}"
    if len(line) > opts.max_doc_bytes:
        yield Quarantined(loc, f"too_large: {len(line)} bytes > max_doc_bytes {opts.max_doc_bytes}", line[:QUARANTINE_RAW_LIMIT])
        return
    try:
        s = line.decode("utf-8")
    except UnicodeDecodeError as e:
        yield Quarantined(loc, f"invalid_utf8: {e.reason} at byte {e.start}", line)
        return
    try:
        rec = json.loads(s)
    except json.JSONDecodeError as e:
        yield Quarantined(loc, f"invalid_json: {e.msg} at column {e.colno}", line)
        return
    if not isinstance(rec, dict):
        yield Quarantined(loc, f"not_an_object: got {type(rec).__name__}", line)
        return
    if _SURROGATE_ESCAPE.search(line):  # \ud800-\udfff: fine in a pair, not alone (no UTF-8)
        try:
            json.dumps(rec, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError as e:
            yield Quarantined(loc, f"invalid_json: unpaired surrogate escape \\u{ord(e.object[e.start]):04x}", line)
            return
    text = rec.get(opts.text_field)
    if not isinstance(text, str):
        what = "missing" if text is None else f"not a string ({type(text).__name__})"
        yield Quarantined(loc, f"missing_text: field {opts.text_field!r} is {what}", line)
        return
    rid = rec.get(opts.id_field)
    key = str(rid) if rid is not None else (rec.get(opts.url_field) or f"{path.name}:{lineno}")
    out = buf.add(_record_to_row(rec, text, str(key), opts, buf.source))
    if out is not None:
        yield out


_SURROGATE_ESCAPE = re.compile(rb"\\[uU][dD][89a-fA-F]")
_FLAT_TYPES = (pa.string(), pa.int64(), pa.float64(), pa.bool_())


def _jsonl_block(lines: list[tuple[int, bytes]], path: Loc, opts: ReaderOptions, source: str) -> pa.Table | None:
    """The batch :func:`_jsonl_line` would build from ``lines``, parsed by pyarrow's JSON
    reader in one go, or ``None`` where that could differ: any line that is not clean UTF-8
    JSON of one object (pyarrow is as strict as ``json`` there, and stricter), a BOM, a
    missing or null value anywhere (``Table.from_pylist`` takes its columns from the first
    row), nested values, a column pyarrow would type otherwise (timestamps, a repeated key,
    integers beyond 2**53 read as doubles), a non-string id/url or a name clash with a
    renamed ``input.source``. Then the caller goes line by line."""
    from pyarrow import json as pa_json

    data = b"".join(ln for _, ln in lines)
    if not data.endswith(b"\n"):
        data += b"\n"
    if b"\xef\xbb\xbf" in data:
        return None
    try:
        data.decode("utf-8")
        t = pa_json.read_json(
            io.BytesIO(data),
            read_options=pa_json.ReadOptions(use_threads=False, block_size=len(data) + 1),
            parse_options=pa_json.ParseOptions(newlines_in_values=False),
        )
    except (UnicodeDecodeError, pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    n = len(lines)
    if t.num_rows != n:
        return None
    cols_in: dict[str, pa.Array] = {}
    for f in t.schema:
        col = t.column(f.name).combine_chunks()
        if f.type not in _FLAT_TYPES or col.null_count:
            return None
        if f.type == pa.float64():
            whole = pc.and_(pc.equal(pc.floor(col), col), pc.greater(pc.abs(col), 2.0**53))
            if pc.any(whole).as_py():
                return None  # maybe a big JSON integer, which json gives as an int
        cols_in[f.name] = col
    tf = opts.text_field
    if tf not in cols_in or cols_in[tf].type != pa.string():
        return None
    for f in (opts.id_field, opts.url_field):
        if f in cols_in and f != tf and cols_in[f].type not in (pa.string(), pa.int64()):
            return None
    if opts.url_field in cols_in and cols_in[opts.url_field].type != pa.string():
        return None
    # the columns in the order and with the names _record_to_row gives them
    cols: dict[str, pa.Array] = {}
    for name, col in cols_in.items():
        if name == tf:
            continue
        if name == schema.SOURCE and col.type != pa.string():
            name = f"input.{name}"
            if name in cols_in:
                return None
        cols[name] = col
    url = cols_in.get(opts.url_field)
    cols[schema.URL] = url if url is not None else pa.nulls(n)
    text = cols_in[tf]
    ids: list[str | None]
    given = cols_in.get(schema.DOC_ID)
    ids = given.to_pylist() if given is not None and given.type == pa.string() else [None] * n
    if not all(ids):
        if opts.id_field in cols_in:
            keys = [str(v) for v in cols_in[opts.id_field].to_pylist()]
        else:
            urls = url.to_pylist() if url is not None else [None] * n
            keys = [u or f"{path.name}:{ln}" for u, (ln, _) in zip(urls, lines)]
        _, obuf, dbuf = text.buffers()
        toffs = np.frombuffer(obuf, np.int32)[text.offset : text.offset + n + 1].tolist()
        tdata = memoryview(dbuf if dbuf is not None else b"")
        for i, d in enumerate(ids):
            if not d:
                h = xxhash.xxh3_128()
                h.update(keys[i].encode("utf-8", "surrogatepass"))
                h.update(b"\0")
                h.update(tdata[toffs[i] : toffs[i + 1]])
                ids[i] = h.hexdigest()
    cols[schema.DOC_ID] = pa.array(ids, pa.string())
    src = cols_in.get(schema.SOURCE)
    if src is not None and src.type == pa.string():
        cols[schema.SOURCE] = pc.if_else(pc.equal(src, ""), source, src)
    else:
        cols[schema.SOURCE] = pa.array([source] * n, pa.string())
    cols[schema.TEXT] = text
    return schema.normalize_required(pa.table(cols))


# -- Parquet ----------------------------------------------------------------------------------------


def _read_parquet(path: Loc, opts: ReaderOptions, part: Part = (0, 1)) -> Iterator[ReadItem]:
    k, n = part
    try:
        pf = pq.ParquetFile(storage.open_input_file(path))
    except Exception as e:
        if k == 0:
            yield Quarantined(str(path), f"unreadable_parquet: {e}")
        return
    names = pf.schema_arrow.names
    problem = None
    if opts.text_field not in names:
        problem = f"wrong_schema: no text column {opts.text_field!r} (columns: {', '.join(names)})"
    else:
        ttype = pf.schema_arrow.field(opts.text_field).type
        if not (pa.types.is_string(ttype) or pa.types.is_large_string(ttype)):
            problem = f"wrong_schema: text column {opts.text_field!r} has type {ttype}, expected string"
    if problem is not None:
        if k == 0:
            yield Quarantined(str(path), problem)
        return
    source = opts.source or path.name
    row0 = 0
    try:
        for rb in pf.iter_batches(batch_size=opts.batch_size):
            table = pa.Table.from_batches([rb])
            if n > 1:
                rows = np.arange(row0, row0 + rb.num_rows)
                own = np.flatnonzero(rows % n == k)
                yield from _parquet_batch(table.take(pa.array(own)), path, rows[own].tolist(), opts, source)
            else:
                yield from _parquet_batch(table, path, list(range(row0, row0 + rb.num_rows)), opts, source)
            row0 += rb.num_rows
    except Exception as e:
        if k == 0:
            yield Quarantined(f"{path}:row{row0}", f"corrupt_parquet: after {row0} rows: {e}")


def _parquet_batch(table: pa.Table, path: Loc, rows: list[int], opts: ReaderOptions, source: str) -> Iterator[ReadItem]:
    """One batch of Parquet rows (``rows``: their row numbers in the file) -> documents."""
    texts = table.column(opts.text_field).to_pylist()
    bad = {i for i, t in enumerate(texts) if t is None or len(t) > opts.max_doc_bytes}
    if bad:
        for i in sorted(bad):
            row = table.slice(i, 1).to_pylist()[0]
            reason = "missing_text: null" if texts[i] is None else f"too_large: {len(texts[i])} chars > max_doc_bytes {opts.max_doc_bytes}"
            raw = json.dumps(row, default=str).encode()[:QUARANTINE_RAW_LIMIT]
            yield Quarantined(f"{path}:row{rows[i]}", reason, raw)
        good = [i for i in range(len(texts)) if i not in bad]
        table = table.take(pa.array(good, pa.int64()))
        texts = [texts[i] for i in good]
        rows = [rows[i] for i in good]
    if table.num_rows == 0:
        return
    if opts.text_field != schema.TEXT:
        if schema.TEXT in table.column_names:
            table = table.rename_columns([f"input.{schema.TEXT}" if c == schema.TEXT else c for c in table.column_names])
        table = table.rename_columns([schema.TEXT if c == opts.text_field else c for c in table.column_names])
    n = table.num_rows
    if schema.URL not in table.column_names:
        if opts.url_field in table.column_names:
            table = table.append_column(schema.URL, table.column(opts.url_field).cast(pa.string()))
        else:
            table = table.append_column(schema.URL, pa.nulls(n, pa.string()))
    if schema.SOURCE not in table.column_names:
        table = table.append_column(schema.SOURCE, pa.array([source] * n, pa.string()))
    if schema.DOC_ID not in table.column_names:
        ids = table.column(opts.id_field).to_pylist() if opts.id_field in table.column_names else None
        urls = table.column(schema.URL).to_pylist()
        doc_ids = []
        for j, t in enumerate(texts):
            key = ids[j] if ids is not None and ids[j] is not None else (urls[j] or f"{path.name}:row{rows[j]}")
            doc_ids.append(schema.make_doc_id(str(key), t))
        table = table.append_column(schema.DOC_ID, pa.array(doc_ids, pa.string()))
    yield schema.normalize_required(table)


# -- WARC / WET ---------------------------------------------------------------------------------------

_HTML_TYPES = ("text/html", "application/xhtml+xml", "application/xml", "text/xml")


class _PrefixedStream(io.RawIOBase):
    """A stream that first serves ``prefix`` then reads on from ``rest`` (for WARC resync)."""

    def __init__(self, prefix: bytes, rest: BinaryIO):
        self._prefix = memoryview(prefix)
        self._rest = rest
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = 0) -> int:
        """Only no-op seeks (fastwarc asks where it is); skipping forward reads and discards."""
        target = offset if whence == io.SEEK_SET else self._pos + offset
        if whence == io.SEEK_END or target < self._pos:
            raise io.UnsupportedOperation("this stream only seeks forward")
        while self._pos < target:
            if not self.read(min(1 << 20, target - self._pos)):
                break
        return self._pos

    def readinto(self, b: Any) -> int:
        if len(self._prefix):
            n = min(len(b), len(self._prefix))
            b[:n] = self._prefix[:n]
            self._prefix = self._prefix[n:]
            self._pos += n
            return n
        data = self._rest.read(len(b))
        n = len(data)
        b[:n] = data
        self._pos += n
        return n

    def close(self) -> None:
        self._rest.close()
        super().close()


class _BrokenRecord(Exception):
    def __init__(self, msg: str, offset: int):
        super().__init__(msg)
        self.offset = offset


def _warc_resync(path: Loc, search_from: int) -> tuple[bytes, int, BinaryIO | None]:
    """Find the record after a broken one. Returns (skipped bytes, resume offset, stream at resume).

    The broken record is the first ``WARC/1.`` line at or after the decompressed offset
    ``search_from``; we resume at the next one.
    """
    fh = open_decompressed(path)
    pos = 0
    skip = max(search_from, 0)
    while pos < skip:  # re-decompress up to the broken record (rare path: O(file) per error)
        chunk = fh.read(min(1 << 20, skip - pos))
        if not chunk:
            break
        pos += len(chunk)
    window = b""
    bad_start = -1
    while True:
        chunk = fh.read(1 << 20)
        window += chunk
        if bad_start < 0:
            bad_start = window.find(b"WARC/1.")
            if bad_start < 0 and chunk:
                continue
        nxt = window.find(b"\nWARC/1.", max(bad_start, 0) + 7) if bad_start >= 0 else -1
        if nxt >= 0:
            resume = nxt + 1
            skipped = window[max(bad_start, 0):resume]
            return skipped, pos + resume, _PrefixedStream(window[resume:], fh)  # type: ignore[return-value]
        if not chunk:  # no further record: the broken one ran to the end of the file
            fh.close()
            return window[max(bad_start, 0):], pos + len(window), None
        if len(window) > 64 * QUARANTINE_RAW_LIMIT:  # give up keeping; keep scanning bounded
            window = window[-QUARANTINE_RAW_LIMIT:]
            bad_start = 0


def _read_warc(path: Loc, opts: ReaderOptions, part: Part = (0, 1)) -> Iterator[ReadItem]:
    from fastwarc.warc import ArchiveIterator, WarcRecordType

    buf = _RowBuffer(opts, path.name)
    k, n = part
    try:
        stream: BinaryIO | None = open_decompressed(path)
    except OSError as e:
        if k == 0:
            yield Quarantined(str(path), f"unreadable_file: {e}")
        return
    base = 0  # decompressed offset at which the current stream starts
    last_good = -1
    n_records = 0  # records of the file (all parts), in file order
    wanted = WarcRecordType.response | WarcRecordType.conversion | WarcRecordType.resource
    while stream is not None:
        current = stream
        try:
            for rec in ArchiveIterator(current, record_types=wanted, parse_http=True):
                last_good = base + rec.stream_pos
                clen = rec.headers.get("Content-Length") or ""
                if not clen.strip().isdigit():  # every part checks, so all count records alike
                    raise _BrokenRecord(f"invalid Content-Length {clen!r}", last_good)
                n_records += 1
                if (n_records - 1) % n != k:
                    continue
                item = _warc_record(rec, path, last_good, opts, buf)
                if item is not None:
                    yield item
            stream = None
        except (EOFError, gzip.BadGzipFile, OSError, _BrokenRecord) as e:
            msg = str(e)
            if isinstance(e, (EOFError, gzip.BadGzipFile)) or "gzip" in msg.lower() or "compressed" in msg.lower():
                if k == 0:
                    yield Quarantined(f"{path}@{last_good}", f"truncated_or_corrupt_stream: after {n_records} records: {msg}")
                stream = None
            else:
                search_from = e.offset if isinstance(e, _BrokenRecord) else last_good + 1
                skipped, resume, stream = _warc_resync(path, search_from)
                if k == 0:
                    yield Quarantined(f"{path}@{resume - len(skipped)}", f"broken_warc_record: {msg}", skipped[:QUARANTINE_RAW_LIMIT])
                base = resume
                last_good = resume - 1
        finally:
            current.close()
    last = buf.flush()
    if last is not None:
        yield last


def _warc_record(rec: Any, path: Loc, offset: int, opts: ReaderOptions, buf: _RowBuffer) -> ReadItem | None:
    from fastwarc.warc import WarcRecordType

    url = rec.headers.get("WARC-Target-URI")
    rid = rec.record_id or f"{path.name}@{offset}"
    body = rec.reader.read()
    loc = f"{path}@{offset}"
    if len(body) > opts.max_doc_bytes:
        return Quarantined(loc, f"too_large: {len(body)} bytes > max_doc_bytes {opts.max_doc_bytes}", body[:QUARANTINE_RAW_LIMIT])
    if rec.record_type == WarcRecordType.conversion:  # WET: plain text
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as e:
            return Quarantined(loc, f"invalid_utf8: {e.reason} at byte {e.start}", body[:QUARANTINE_RAW_LIMIT])
        row = {schema.DOC_ID: schema.make_doc_id(rid, text), schema.TEXT: text, schema.SOURCE: buf.source, schema.URL: url,
               "warc.record_id": rid, "warc.date": rec.headers.get("WARC-Date")}
        return buf.add(row)
    ctype = ""
    if rec.http_headers is not None:
        ctype = (rec.http_headers.get("Content-Type") or "").lower()
    elif rec.record_type == WarcRecordType.resource:
        ctype = (rec.headers.get("Content-Type") or "").lower()
    if ctype and not ctype.startswith(_HTML_TYPES):
        return None  # images, PDFs, scripts: not documents of an HTML corpus
    h = xxhash.xxh3_128()
    h.update(rid.encode())
    h.update(b"\0")
    h.update(body)
    row = {schema.DOC_ID: h.hexdigest(), schema.TEXT: "", schema.SOURCE: buf.source, schema.URL: url,
           schema.HTML: body, "warc.record_id": rid, "warc.date": rec.headers.get("WARC-Date"),
           "warc.content_type": ctype or None}
    return buf.add(row)
