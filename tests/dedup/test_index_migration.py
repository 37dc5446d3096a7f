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
from dedup.minhash import _sets_of


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
    flat, offs = _sets_of(t.column("shingles").combine_chunks())
    (state / "shingles.u32").write_bytes(flat.astype(np.uint32).tobytes())
    np.save(state / "shingle_offsets.npy", offs.astype(np.int64))
    shutil.rmtree(state / "index")
    (state / "index.json").write_text(json.dumps({**info, "format": "assay.minhash-index/1"}))


def _kept(snap: Path) -> list[str]:
    m = json.loads((snap / "manifest.json").read_text())
    return sorted(i for s in m["shards"] for i in pq.read_table(snap / s["path"], columns=["doc_id"]).column(0).to_pylist())


def _snapshots(rows: list[dict], tmp_path: Path) -> tuple[CliRunner, Path, Path, Path]:
    """snap1 = minhash of rows[:300]; ref = minhash of b = rows[250:500] against snap1;
    old = a copy of snap1 to rewrite. Returns the runner, b, old and old's index folder."""
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    _write(rows[:300], a)
    _write(rows[250:500], b)
    run = CliRunner()
    assert run.invoke(dedup, ["minhash", str(a), str(tmp_path / "snap1")]).exit_code == 0
    ref = run.invoke(dedup, ["minhash", str(b), str(tmp_path / "ref"), "--against", str(tmp_path / "snap1")])
    assert ref.exit_code == 0, ref.output
    old = tmp_path / "old"
    shutil.copytree(tmp_path / "snap1", old)
    (state,) = (p.parent for p in (old / "state").glob("*/index.json"))
    return run, b, old, state


def test_v1_index_error_names_the_fix_then_migration_gives_the_current_result(copyright_rows, tmp_path: Path):
    run, b, old, state = _snapshots(copyright_rows, tmp_path)
    _to_v1(state)
    r = run.invoke(dedup, ["minhash", str(b), str(tmp_path / "fails"), "--against", str(old)])
    assert r.exit_code == 1, (r.output, r.exception)
    (msg,) = [ln for ln in r.output.splitlines() if ln.startswith("Error:")]  # one line, no traceback
    assert "assay.minhash-index/1" in msg and f"assay dedup migrate-index {state}" in msg

    mig = run.invoke(dedup, ["migrate-index", str(old)])
    assert mig.exit_code == 0, mig.output
    n = json.loads((tmp_path / "snap1" / "manifest.json").read_text())["stats"]["docs_in"]  # every doc it saw
    assert json.loads(mig.output) == {"index": str(state), "docs_converted": n}
    assert json.loads((state / "index.json").read_text())["format"] == "assay.minhash-index/3"
    again = run.invoke(dedup, ["minhash", str(b), str(tmp_path / "new"), "--against", str(old)])
    assert again.exit_code == 0, again.output
    assert _kept(tmp_path / "new") == _kept(tmp_path / "ref")
    assert len(_kept(tmp_path / "ref")) < 250  # the shared files were found in the old index
    # idempotent: a second migration converts nothing
    assert json.loads(run.invoke(dedup, ["migrate-index", str(old)]).output)["docs_converted"] == 0


def _to_v2(state: Path) -> None:
    """Rewrite a current index's parts in the /2 layout (each shingle set a Parquet list<uint32>)."""
    for p in sorted((state / "index").glob("part-*.parquet")):
        t = pq.read_table(p)
        flat, offs = _sets_of(t.column("shingles").combine_chunks())
        i = t.column_names.index("shingles")
        t = t.set_column(i, "shingles", pa.LargeListArray.from_arrays(pa.array(offs), pa.array(flat, pa.uint32())))
        p.unlink()  # the part may be a hard link to the run's artifact
        pq.write_table(t, p)
    info = json.loads((state / "index.json").read_text())
    (state / "index.json").write_text(json.dumps({**info, "format": "assay.minhash-index/2"}))


def test_v2_index_with_list_shingle_sets_is_read_as_it_is(copyright_rows, tmp_path: Path):
    run, b, old, state = _snapshots(copyright_rows, tmp_path)
    _to_v2(state)
    assert pa.types.is_large_list(pq.read_schema(next((state / "index").glob("*.parquet"))).field("shingles").type)
    r = run.invoke(dedup, ["minhash", str(b), str(tmp_path / "new"), "--against", str(old)])
    assert r.exit_code == 0, r.output
    assert _kept(tmp_path / "new") == _kept(tmp_path / "ref")
    assert len(_kept(tmp_path / "ref")) < 250  # the shared files were found in the old index
    assert json.loads(run.invoke(dedup, ["migrate-index", str(old)]).output)["docs_converted"] == 0
