"""A snapshot is plain Parquet: pyarrow, Polars, DuckDB and HF `datasets` all read it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.run import run_single


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory, raw_docs) -> Path:
    d = tmp_path_factory.mktemp("in")
    with open(d / "docs.jsonl", "w") as fh:
        for i, doc in enumerate(raw_docs[:200]):
            fh.write(json.dumps({"id": i, "text": doc["text"], "meta": {"kind": doc.get("kind")}}) + "\n")
    out = tmp_path_factory.mktemp("out") / "snap"
    run_single("dedup.exact", {}, [str(d)], str(out))
    return out


def _expected(snapshot: Path) -> int:
    return json.loads((snapshot / "manifest.json").read_text())["totals"]["rows"]


def test_pyarrow_and_polars_read_it(snapshot: Path):
    import polars as pl
    import pyarrow.dataset as ds

    n = _expected(snapshot)
    t = ds.dataset(snapshot / "shards", format="parquet").to_table()
    assert t.num_rows == n and t.column("id").to_pylist()[:3] == [0, 1, 2]
    df = pl.read_parquet(snapshot / "shards" / "*.parquet")
    assert df.height == n and df["meta"].struct.field("kind").null_count() < n


def test_duckdb_reads_it(snapshot: Path):
    duckdb = pytest.importorskip("duckdb")
    n = _expected(snapshot)
    got = duckdb.sql(f"select count(*), count(distinct doc_id) from read_parquet('{snapshot}/shards/*.parquet')").fetchall()[0]
    assert got == (n, n)


def test_hf_datasets_reads_it(snapshot: Path):
    datasets = pytest.importorskip("datasets")
    n = _expected(snapshot)
    files = [str(p) for p in sorted((snapshot / "shards").glob("*.parquet"))]
    d = datasets.load_dataset("parquet", data_files=files, split="train", cache_dir=str(snapshot.parent / "hfcache"))
    assert len(d) == n and "text" in d.column_names
