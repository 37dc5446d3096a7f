"""Writers: Parquet shards written atomically and durably, and the manifest.

Locally a file goes to a temp name, is fsynced, renamed into place and its folder fsynced
(:func:`pipeline.storage.publish_local`), so a shard is on disk before the marker that names
it. On an object store the shard is PUT at its final key (no rename exists there); the marker
written after it is the commit (see :mod:`pipeline.storage`).

Passthrough columns from JSONL can change type from batch to batch (an id that is an int in
one record and a string in the next, a field that is null in the first thousand rows). The
writer fixes the shard's schema from its first rows and conforms later batches to it: missing
columns become nulls, ``null``-typed columns are widened to string, casts that Arrow cannot do
are written as JSON text. Nothing is dropped for a schema mismatch.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline import storage
from pipeline.storage import Loc


def atomic_write_bytes(path: Loc | str, data: bytes) -> None:
    storage.write_bytes(path, data)


def atomic_write_json(path: Loc | str, obj: Any) -> None:
    storage.write_json(path, obj)


def sha256_file(path: Loc | str) -> str:
    return storage.sha256(path)


def word_tokens(table: pa.Table) -> int:
    """Whitespace words in ``table['text']`` (the manifest's ``words``; not tokens)."""
    from pipeline.tokens import word_count

    return word_count(table)


def _widen(t: pa.DataType) -> pa.DataType:
    """All-null columns get a real type (string), so later non-null values still fit."""
    return pa.string() if pa.types.is_null(t) else t


def _json_column(col: pa.ChunkedArray | pa.Array) -> pa.Array:
    return pa.array(
        [None if v is None else json.dumps(v, default=str, sort_keys=True) for v in col.to_pylist()],
        pa.string(),
    )


def conform(table: pa.Table, target: pa.Schema) -> pa.Table:
    """Make ``table`` match ``target`` (extra columns are an error the caller handles)."""
    cols = []
    n = table.num_rows
    for f in target:
        if f.name not in table.column_names:
            cols.append(pa.nulls(n, f.type))
            continue
        col = table.column(f.name)
        if col.type == f.type:
            cols.append(col)
            continue
        try:
            cols.append(col.cast(f.type))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            if pa.types.is_string(f.type) or pa.types.is_large_string(f.type):
                cols.append(_json_column(col).cast(f.type))
            else:
                raise
    return pa.Table.from_arrays(cols, schema=target)


class ParquetShardWriter:
    """Streams tables into one Parquet file; ``close()`` renames it into place.

    Row groups hold ``row_group_rows`` rows. Output is deterministic: the same tables give the
    same bytes (no timestamps are written). When a column first appears after the schema was
    fixed, the writer starts a second temporary part and, at ``close()``, rewrites the parts
    into one file under the unified schema, one row group at a time (memory stays bounded).
    """

    def __init__(self, path: Loc | str, compression: str = "zstd", row_group_rows: int = 10_000,
                 token_counter: Any = None, count_words: bool = True):
        self.path = storage.as_loc(path)
        self.remote = storage.is_url(self.path)
        self.compression = None if compression == "none" else compression
        self.row_group_rows = row_group_rows
        self._parts: list[tuple[Loc, pa.Schema]] = []
        self._writer: pq.ParquetWriter | None = None
        self._sink: Any = None
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self.rows = 0
        #: whitespace words written (the manifest's ``words``); None when not counted (an
        #: intermediate shard, which no manifest names)
        self.words: int | None = 0 if count_words else None
        #: tokens from ``token_counter`` (a :class:`pipeline.tokens.TokenCounter`); None without
        self.tokens: int | None = 0 if token_counter is not None else None
        self._counter = token_counter

    def _tmp(self, i: int) -> Loc:
        if self.remote:  # the first part goes straight to its final key (no rename on S3)
            return self.path if i == 0 else self.path.parent / f".{self.path.name}.tmp{i}-{os.getpid()}"
        return storage.tmp_name(self.path, str(i))  # type: ignore[arg-type]

    def _open_writer(self, where: Loc, sch: pa.Schema) -> pq.ParquetWriter:
        self._sink = storage.open_output(where)
        return pq.ParquetWriter(self._sink, sch, compression=self.compression)

    def _close_writer(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._sink is not None:
            self._sink.close()
            self._sink = None

    def write(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        self._pending.append(table)
        self._pending_rows += table.num_rows
        if self._pending_rows >= self.row_group_rows:
            self._flush()

    def _open_part(self, sch: pa.Schema) -> None:
        self._close_writer()
        tmp = self._tmp(len(self._parts))
        self._parts.append((tmp, sch))
        self._writer = self._open_writer(tmp, sch)

    def _flush(self) -> None:
        if not self._pending:
            return
        table = pa.concat_tables(self._pending, promote_options="permissive")
        self._pending, self._pending_rows = [], 0
        if not self._parts:
            self._open_part(pa.schema([pa.field(f.name, _widen(f.type)) for f in table.schema]))
        else:
            current = self._parts[-1][1]
            extra = [c for c in table.column_names
                     if c not in current.names and table.column(c).null_count < table.num_rows]
            if extra:
                fields = list(current) + [pa.field(c, _widen(table.schema.field(c).type)) for c in extra]
                self._open_part(pa.schema(fields))
        table = conform(table, self._parts[-1][1])
        if self.words is not None:
            self.words += word_tokens(table)
        if self._counter is not None:
            self.tokens = (self.tokens or 0) + self._counter.count(table)
        assert self._writer is not None
        for start in range(0, table.num_rows, self.row_group_rows):
            self._writer.write_table(table.slice(start, self.row_group_rows))
        self.rows += table.num_rows

    def close(self) -> bool:
        """Finish the file. Returns False (and writes nothing) when no row was written."""
        self._flush()
        if self._writer is None:
            return False
        self._close_writer()
        if len(self._parts) == 1:
            self._publish(self._parts[0][0])
            return True
        final = self._parts[-1][1]  # each part's schema extends the one before
        tmp = self._tmp(len(self._parts)) if not self.remote else self.path.parent / f".{self.path.name}.merge-{os.getpid()}"
        w = self._open_writer(tmp, final)
        for part, _ in self._parts:
            pf = pq.ParquetFile(storage.open_input_file(part))
            for i in range(pf.num_row_groups):
                w.write_table(conform(pf.read_row_group(i), final))
        self._writer = w
        self._close_writer()
        if self.remote:  # rewrite the merged file at the final key, then drop the parts
            storage.write_bytes(self.path, storage.read_bytes(tmp))
            storage.remove(tmp)
        for part, _ in self._parts:
            if part != self.path:
                storage.remove(part)
        if not self.remote:
            self._publish(tmp)
        return True

    def _publish(self, tmp: Loc) -> None:
        if not self.remote:
            storage.publish_local(tmp, self.path)  # type: ignore[arg-type]

    def abort(self) -> None:
        try:
            self._close_writer()
        except Exception:  # noqa: BLE001 - the write already failed; clean up what we can
            self._writer = self._sink = None
        for part, _ in self._parts:
            if part != self.path:
                storage.remove(part)


def write_table_atomic(path: Loc | str, table: pa.Table, compression: str = "zstd") -> None:
    """Write one table to ``path`` atomically and durably (an empty table still gets its schema)."""
    loc = storage.as_loc(path)
    comp = None if compression == "none" else compression
    if storage.is_url(loc):
        with storage.open_output(loc) as out:
            pq.write_table(table, out, compression=comp)
        return
    assert isinstance(loc, Path)
    loc.parent.mkdir(parents=True, exist_ok=True)
    tmp = storage.tmp_name(loc)
    try:
        pq.write_table(table, tmp, compression=comp)
        storage.publish_local(tmp, loc)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
