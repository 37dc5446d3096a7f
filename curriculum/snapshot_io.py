"""Read and write snapshots (Parquet shards + ``manifest.json``, format in ``docs/manifest.md``).

The curriculum builder and the tests share this one reader/writer. It uses the pipeline's
writer and manifest helpers (atomic writes, sha256, token estimate, totals) but not its
executor: a snapshot is only a folder, a manifest and Parquet files.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.manifest import FORMAT, check_shard, totals
from pipeline.writers import atomic_write_bytes, sha256_file, word_tokens, write_table_atomic

__all__ = ["FORMAT", "read_manifest", "read_snapshot", "sha256_file", "word_tokens", "write_snapshot"]

MANIFEST = "manifest.json"
REQUIRED = ("doc_id", "text", "source", "url")


def read_manifest(snapshot: str | Path) -> dict[str, Any]:
    """Load ``manifest.json`` from a snapshot folder (or the manifest path itself)."""
    path = Path(snapshot)
    if path.is_dir():
        path = path / MANIFEST
    if not path.exists():
        raise FileNotFoundError(
            f"no snapshot manifest at {path}: pass a folder holding manifest.json "
            "(written by `assay run` or `assay curriculum build`)"
        )
    manifest = json.loads(path.read_text())
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{path}: format {manifest.get('format')!r}, expected {FORMAT!r}")
    return manifest


def shard_paths(snapshot: str | Path, manifest: dict[str, Any] | None = None) -> list[Path]:
    root = Path(snapshot)
    manifest = manifest or read_manifest(root)
    return [root / s["path"] for s in manifest["shards"]]


def iter_shards(
    snapshot: str | Path, columns: list[str] | None = None
) -> Iterator[tuple[dict[str, Any], pa.Table]]:
    """Yield ``(shard entry, table)`` for every shard, in manifest order."""
    root = Path(snapshot)
    manifest = read_manifest(root)
    for entry in manifest["shards"]:
        check_shard(root, entry)  # sha256 against the manifest: a corrupt shard is an error
        yield entry, pq.read_table(root / entry["path"], columns=columns)


def read_snapshot(snapshot: str | Path, columns: list[str] | None = None) -> pa.Table:
    """All shards concatenated (small snapshots only: tests, curriculum building)."""
    tables = [t for _, t in iter_shards(snapshot, columns)]
    return pa.concat_tables(tables, promote_options="default")


def _schema_json(schema: pa.Schema) -> list[dict[str, str]]:
    return [{"name": f.name, "type": str(f.type)} for f in schema]


def write_snapshot(
    output: str | Path,
    shards: Iterable[tuple[str, pa.Table] | tuple[str, pa.Table, str | None]],
    *,
    name: str = "snapshot",
    spec: dict[str, Any] | None = None,
    parents: list[str] | None = None,
    stats: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    code_version: str = "0.1.0",
) -> dict[str, Any]:
    """Write ``(stem, table[, phase])`` shards as ``shards/part-NNNNN-<stem>.parquet`` + manifest.

    Shards are written temp-file-then-rename and the manifest last, so a reader never sees a
    half-written snapshot. The manifest holds no timestamps: the same input gives the same bytes.
    A folder that already holds a snapshot of another spec (or a manifest that is no snapshot's)
    is refused before anything is written: writing the same spec again is a rebuild.
    """
    out = Path(output)
    spec = spec or {"name": name}
    spec_hash = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()
    if (out / MANIFEST).exists():
        try:
            held = json.loads((out / MANIFEST).read_text()).get("spec_hash")
        except (ValueError, AttributeError, OSError):
            held = "unreadable"
        if held != spec_hash:
            raise ValueError(f"output {str(output)!r} holds another snapshot (spec hash {str(held)[:12]}, this spec "
                             f"{spec_hash[:12]}): writing here would replace its manifest; choose a new output "
                             "folder or delete that one")
    (out / "shards").mkdir(parents=True, exist_ok=True)
    entries: list[dict[str, Any]] = []
    schema: pa.Schema | None = None
    for i, item in enumerate(shards):
        stem, table = item[0], item[1]
        phase = item[2] if len(item) > 2 else None  # type: ignore[misc]
        missing = [c for c in REQUIRED if c not in table.column_names]
        if missing:
            raise ValueError(f"shard {stem!r} lacks required column(s) {missing}")
        rel = f"shards/part-{i:05d}-{stem}.parquet"
        path = out / rel
        write_table_atomic(path, table)
        schema = table.schema if schema is None else pa.unify_schemas([schema, table.schema])
        entries.append(
            {
                "path": rel,
                "rows": table.num_rows,
                "bytes": path.stat().st_size,
                "sha256": sha256_file(path),
                "words": word_tokens(table),
                "tokens": None,  # no tokenizer counted them (see pipeline.tokens)
                "phase": phase,
            }
        )
    content = hashlib.sha256("".join(e["sha256"] for e in entries).encode()).hexdigest()
    manifest = {
        "format": FORMAT,
        "snapshot_id": f"{spec_hash[:12]}-{content[:12]}",
        "name": name,
        "code_version": code_version,
        "spec": spec,
        "spec_hash": spec_hash,
        "parents": parents or [],
        "schema": _schema_json(schema) if schema is not None else [],
        "shards": entries,
        "totals": totals(entries),
        "stats": stats or {},
        "extra": extra or {},
    }
    atomic_write_bytes(out / MANIFEST, (json.dumps(manifest, indent=2, sort_keys=False) + "\n").encode())
    return manifest


def read_jsonl_texts(
    path: str | Path, limit: int | None = None, where: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """Records of a JSONL / JSONL.zst file, optionally only those matching ``where``."""
    import io

    p = Path(path)
    if p.suffix == ".zst":
        import zstandard

        fh: Any = io.TextIOWrapper(
            zstandard.ZstdDecompressor().stream_reader(open(p, "rb")), encoding="utf-8"
        )
    else:
        fh = open(p, encoding="utf-8")
    out: list[dict[str, Any]] = []
    with fh:
        for line in fh:
            rec = json.loads(line)
            if where and any(rec.get(k) != v for k, v in where.items()):
                continue
            out.append(rec)
            if limit is not None and len(out) >= limit:
                break
    return out


def table_from_records(records: list[dict[str, Any]], source_default: str = "jsonl") -> pa.Table:
    """Records with at least ``text`` → a table with the required columns (ids hashed stably)."""
    import xxhash

    texts = [r["text"] for r in records]
    ids = [
        xxhash.xxh3_128_hexdigest(f"{r.get('id', i)}\0{r['text']}".encode("utf-8", "surrogatepass"))
        for i, r in enumerate(records)
    ]
    cols: dict[str, pa.Array] = {
        "doc_id": pa.array(ids, pa.string()),
        "text": pa.array(texts, pa.large_string()),
        "source": pa.array([str(r.get("source", source_default)) for r in records], pa.string()),
        "url": pa.array([r.get("url") for r in records], pa.string()),
    }
    extra_keys = sorted({k for r in records for k in r} - {"text", "source", "url", "id"})
    for k in extra_keys:
        cols[k] = pa.array([r.get(k) for r in records])
    return pa.table(cols)
