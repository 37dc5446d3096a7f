"""Plain row files (JSONL plain/.gz/.zst, or Parquet) read and written as dicts, in chunks.

Used by `assay synth verify` and for reference sets (filter.decontaminate).

Streams in chunks: memory holds one chunk, never the file.
"""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

CHUNK = 256


def is_parquet(path: str | Path) -> bool:
    return str(path).endswith(".parquet")


def _open_text(path: Path) -> io.TextIOBase:
    name = path.name
    if name.endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", errors="replace")
    if name.endswith((".zst", ".zstd")):
        import zstandard

        return io.TextIOWrapper(zstandard.ZstdDecompressor().stream_reader(path.open("rb")), encoding="utf-8", errors="replace")
    return path.open("r", encoding="utf-8", errors="replace")


def iter_row_chunks(path: str | Path, chunk: int = CHUNK) -> Iterator[list[dict[str, Any]]]:
    """Lists of row dicts. A JSONL line that is not a JSON object becomes a row holding only
    ``_malformed`` (the reason) and ``_raw`` (its first 1,000 characters), so nothing is lost."""
    p = Path(path)
    if is_parquet(p):
        pf = pq.ParquetFile(p)
        for batch in pf.iter_batches(batch_size=chunk):
            yield batch.to_pylist()
        return
    rows: list[dict[str, Any]] = []
    with _open_text(p) as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                if not isinstance(obj, dict):
                    raise ValueError("not a JSON object")
            except ValueError as e:
                obj = {"_malformed": f"line {lineno}: {str(e)[:120]}", "_raw": line[:1000]}
            rows.append(obj)
            if len(rows) >= chunk:
                yield rows
                rows = []
    if rows:
        yield rows


class RowWriter:
    """Writes row dicts as JSONL or Parquet (by OUT's suffix), temp file then rename."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.path.with_name(f".{self.path.name}.tmp")
        self.parquet = is_parquet(self.path)
        self._pq: pq.ParquetWriter | None = None
        self._schema: pa.Schema | None = None
        self._f = None if self.parquet else self.tmp.open("w", encoding="utf-8")
        self.rows = 0

    def write(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        self.rows += len(rows)
        if self._f is not None:
            for r in rows:
                self._f.write(json.dumps(r, ensure_ascii=False, default=str) + "\n")
            return
        table = pa.Table.from_pylist(rows, schema=self._schema) if self._schema else pa.Table.from_pylist(rows)
        if self._pq is None:
            self._schema = table.schema
            self._pq = pq.ParquetWriter(self.tmp, table.schema, compression="zstd")
        self._pq.write_table(table)

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
        if self._pq is not None:
            self._pq.close()
        elif self.parquet:
            pq.write_table(pa.table({}), self.tmp)
        self.tmp.replace(self.path)
