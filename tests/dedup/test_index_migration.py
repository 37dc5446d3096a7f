"""An old assay.minhash-index/1 index (one index.parquet + a flat shingle store, the layout
before the partitioned reduce): a job deduping against it fails with one line naming the fix,
and after `assay dedup migrate-index` it gives exactly what the current index gives."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from click.testing import CliRunner

from dedup.cli import dedup


def _write(rows: list[dict], path: Path) -> None:
    path.write_text("".join(json.dumps({"id": r["id"], "text": r["text"]}) + "\n" for r in rows))


def _to_v1(state: Path) -> None:
    """Rewrite a current index as the /1 layout the old code wrote (dedup/minhash.py at dbae50a:
    index.parquet = doc_id + band_NNN uint64 columns; shingles.u32 + shingle_offsets.npy)."""
    from dedup.lsh import band_column

    info = json.loads((state / "index.json").read_text())
    bands = int(info["bands"])
    parts = sorted((state / "index").glob("part-*.parquet"))
    t = pa.concat_tables([pq.read_table(p) for p in parts])
    keys = np.frombuffer(t.column("bands").combine_chunks().buffers()[1], dtype=np.uint64).reshape(-1, bands)
    cols = {"doc_id": t.column("doc_id").cast(pa.string())}
    cols.update({band_column(b): pa.array(keys[:, b]) for b in range(bands)})
    pq.write_table(pa.table(cols), state / "index.parquet", row_group_size=37)  # several row groups
    sh = t.column("shingles").combine_chunks()
    (state / "shingles.u32").write_bytes(sh.values.to_numpy().astype(np.uint32).tobytes())
    np.save(state / "shingle_offsets.npy", sh.offsets.to_numpy().astype(np.int64))
    shutil.rmtree(state / "index")
    (state / "index.json").write_text(json.dumps({**info, "format": "assay.minhash-index/1"}))


def _kept(snap: Path) -> list[str]:
    m = json.loads((snap / "manifest.json").read_text())
    return sorted(i for s in m["shards"] for i in pq.read_table(snap / s["path"], columns=["doc_id"]).column(0).to_pylist())


def test_v1_index_error_names_the_fix_then_migration_gives_the_current_result(copyright_rows, tmp_path: Path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    _write(copyright_rows[:300], a)
    _write(copyright_rows[250:500], b)
    run = CliRunner()
    assert run.invoke(dedup, ["minhash", str(a), str(tmp_path / "snap1")]).exit_code == 0
    ref = run.invoke(dedup, ["minhash", str(b), str(tmp_path / "ref"), "--against", str(tmp_path / "snap1")])
    assert ref.exit_code == 0, ref.output

    old = tmp_path / "old"
    shutil.copytree(tmp_path / "snap1", old)
    (state,) = (p.parent for p in (old / "state").glob("*/index.json"))
    _to_v1(state)
    r = run.invoke(dedup, ["minhash", str(b), str(tmp_path / "fails"), "--against", str(old)])
    assert r.exit_code != 0
    msg = str(r.exception)
    assert "assay.minhash-index/1" in msg and f"assay dedup migrate-index {state}" in msg and "\n" not in msg

    mig = run.invoke(dedup, ["migrate-index", str(old)])
    assert mig.exit_code == 0, mig.output
    n = json.loads((tmp_path / "snap1" / "manifest.json").read_text())["stats"]["docs_in"]  # every doc it saw
    assert json.loads(mig.output) == {"index": str(state), "docs_converted": n}
    assert json.loads((state / "index.json").read_text())["format"] == "assay.minhash-index/2"
    again = run.invoke(dedup, ["minhash", str(b), str(tmp_path / "new"), "--against", str(old)])
    assert again.exit_code == 0, again.output
    assert _kept(tmp_path / "new") == _kept(tmp_path / "ref")
    assert len(_kept(tmp_path / "ref")) < 250  # the shared files were found in the old index
    # idempotent: a second migration converts nothing
    assert json.loads(run.invoke(dedup, ["migrate-index", str(old)]).output)["docs_converted"] == 0
