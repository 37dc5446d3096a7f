"""Real text for the dedup tests: Debian copyright files (many near-identical licences)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pyarrow as pa
import pytest
import zstandard

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


def read_jsonl_zst(name: str, limit: int | None = None) -> list[dict]:
    path = DATA / name
    if not path.exists():
        pytest.skip(f"real data {path} not available")
    rows = []
    with open(path, "rb") as f:
        reader = io.TextIOWrapper(zstandard.ZstdDecompressor().stream_reader(f), encoding="utf-8")
        for i, line in enumerate(reader):
            if limit is not None and i >= limit:
                break
            rows.append(json.loads(line))
    return rows


def _to_table(rows: list[dict], source: str) -> pa.Table:
    return pa.table(
        {
            "doc_id": pa.array([r["id"] for r in rows], pa.string()),
            "text": pa.array([r["text"] for r in rows], pa.large_string()),
            "source": pa.array([source] * len(rows), pa.string()),
            "url": pa.array([None] * len(rows), pa.string()),
        }
    )


@pytest.fixture(scope="session")
def copyright_rows() -> list[dict]:
    return read_jsonl_zst("neardup_copyright.jsonl.zst")


@pytest.fixture(scope="session")
def copyright_table(copyright_rows: list[dict]) -> pa.Table:
    return _to_table(copyright_rows, "copyright")


@pytest.fixture(scope="session")
def prose_rows() -> list[dict]:
    """Distinct documentation pages and literature from the raw pretraining corpus."""
    return read_jsonl_zst("pretrain_raw.jsonl.zst", limit=300)


@pytest.fixture(scope="session")
def to_table():  # type: ignore[no-untyped-def]
    """rows -> Arrow table with the required columns (``id`` becomes ``doc_id``)."""
    return _to_table
