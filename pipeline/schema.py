"""The document schema: one module names every column assay reads or writes.

Required columns travel on every batch. Stages add namespaced columns (``lang``,
``quality.fasttext``, ``dedup.cluster``, ``weight``...). Whatever else the input carries
(its own ``id``, metadata fields) passes through untouched, so users can join back by their ids.
"""

from __future__ import annotations

import pyarrow as pa
import xxhash

DOC_ID = "doc_id"
TEXT = "text"
SOURCE = "source"
URL = "url"

REQUIRED: tuple[str, ...] = (DOC_ID, TEXT, SOURCE, URL)

REQUIRED_FIELDS: tuple[pa.Field, ...] = (
    pa.field(DOC_ID, pa.string(), nullable=False),
    pa.field(TEXT, pa.large_string(), nullable=False),
    pa.field(SOURCE, pa.string(), nullable=False),
    pa.field(URL, pa.string(), nullable=True),
)

# Columns added by stages (names only; each stage declares its own type).
HTML = "html"
LANG = "lang"
LANG_SCORE = "lang_score"
DROP_REASON = "drop_reason"
DROP_STAGE = "drop_stage"
PII_COUNT = "pii.count"
CONTENT_HASH = "dedup.content_hash"
DEDUP_CLUSTER = "dedup.cluster"
DEDUP_CLUSTER_SIZE = "dedup.cluster_size"
WEIGHT = "weight"
PHASE = "phase"
ORDER = "order"


def quality_column(name: str) -> str:
    """Column written by a quality scorer named ``name`` (``quality.fasttext``)."""
    return f"quality.{name}"


QUARANTINE_SCHEMA = pa.schema(
    [
        pa.field("source", pa.string()),
        pa.field("location", pa.string()),
        pa.field("reason", pa.string()),
        pa.field("raw", pa.large_binary()),
    ]
)


def make_doc_id(key: str, text: str) -> str:
    """Stable content hash of a document: xxh3-128 over its identity key and text.

    ``key`` is the record's own identity (URL, input id, or ``file:line``), so two
    different records with the same text get different ids while re-reading the same
    input always gives the same id.
    """
    h = xxhash.xxh3_128()
    h.update(key.encode("utf-8", "surrogatepass"))
    h.update(b"\0")
    h.update(text.encode("utf-8", "surrogatepass"))
    return h.hexdigest()


def normalize_required(table: pa.Table | pa.RecordBatch) -> pa.Table:
    """Cast the required columns to their canonical types; other columns pass untouched."""
    if isinstance(table, pa.RecordBatch):
        table = pa.Table.from_batches([table])
    missing = [c for c in REQUIRED if c not in table.column_names]
    if missing:
        raise ValueError(f"batch is missing required column(s) {missing}; has {table.column_names}")
    for f in REQUIRED_FIELDS:
        i = table.column_names.index(f.name)
        col = table.column(i)
        if col.type != f.type:
            table = table.set_column(i, f.name, col.cast(f.type))
    return table
