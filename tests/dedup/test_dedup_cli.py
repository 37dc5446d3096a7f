"""`assay dedup minhash|soft` through the single-stage runner, on real licence files."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from dedup.cli import dedup


def _registry_or_skip() -> None:
    from pipeline.registry import all_stages

    try:
        all_stages()
    except ModuleNotFoundError as e:  # another package's stage module is not written yet
        if (e.name or "").startswith("dedup"):
            raise
        pytest.skip(f"stage registry incomplete: {e}")


def test_help_names_modes_and_against() -> None:
    r = CliRunner().invoke(dedup, ["minhash", "--help"])
    assert r.exit_code == 0
    for word in ("--threshold", "remove", "annotate", "soft", "--against"):
        assert word in r.output
    assert CliRunner().invoke(dedup, ["soft", "--help"]).exit_code == 0


def test_minhash_then_against_then_soft(copyright_rows: list[dict], tmp_path: Path) -> None:
    _registry_or_skip()
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text(
        "".join(json.dumps({"id": r["id"], "text": r["text"]}) + "\n" for r in copyright_rows[:300])
    )
    b.write_text(
        "".join(
            json.dumps({"id": r["id"], "text": r["text"]}) + "\n" for r in copyright_rows[250:500]
        )
    )
    runner = CliRunner()
    r1 = runner.invoke(dedup, ["minhash", str(a), str(tmp_path / "snap1"), "--threshold", "0.8"])
    assert r1.exit_code == 0, r1.output
    m1 = json.loads((tmp_path / "snap1" / "manifest.json").read_text())
    assert 0 < m1["totals"]["rows"] < 300
    assert list((tmp_path / "snap1" / "state").glob("*/index.json"))
    r2 = runner.invoke(
        dedup, ["minhash", str(b), str(tmp_path / "snap2"), "--against", str(tmp_path / "snap1")]
    )
    assert r2.exit_code == 0, r2.output
    m2 = json.loads((tmp_path / "snap2" / "manifest.json").read_text())
    kept_b = {
        d
        for s in m2["shards"]
        for d in pq.read_table(tmp_path / "snap2" / s["path"], columns=["text"])
        .column(0)
        .to_pylist()
    }
    seen_a = {r["text"] for r in copyright_rows[:300]}
    assert not kept_b & seen_a  # the 50 files both inputs share were already in snap1
    r3 = runner.invoke(
        dedup, ["soft", str(tmp_path / "snap1"), str(tmp_path / "soft"), "--width-log2", "20"]
    )
    assert r3.exit_code == 0, r3.output
    m3 = json.loads((tmp_path / "soft" / "manifest.json").read_text())
    w = pq.read_table(tmp_path / "soft" / m3["shards"][0]["path"]).column("weight").to_numpy()
    assert abs(w.mean() - 1.0) < 0.05


@pytest.mark.parametrize("against", ["nosuch://bucket/snap", "s3://", "ftp://", "missing-snapshot"])
def test_against_naming_no_usable_index_fails_in_one_line(against: str, tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"id": "a", "text": "A short real sentence about deduplication of web pages."}) + "\n")
    bad = against if "://" in against else str(tmp_path / against)
    r = CliRunner().invoke(dedup, ["minhash", str(src), str(tmp_path / "out"), "--against", bad])
    assert r.exit_code == 1, r.output
    lines = [ln for ln in r.output.splitlines() if ln.startswith("Error:")]
    assert len(lines) == 1 and "against:" in lines[0] and "Traceback" not in r.output, r.output


def _corrupt_shingles(snap: Path) -> None:
    """Drop the last byte of every shingle set in the index's first part (a truncated copy)."""
    import pyarrow as pa

    (part, *_) = sorted(snap.glob("state/*/index/part-*.parquet"))
    t = pq.read_table(part)
    i = t.schema.get_field_index("shingles")
    col = t.column(i).combine_chunks()
    t = t.set_column(i, "shingles", pa.array([v[:-1] if v else v for v in col.to_pylist()], col.type))
    pq.write_table(t, part)


def _bad_format(snap: Path) -> None:
    (meta,) = snap.glob("state/*/index.json")
    meta.write_text(json.dumps({**json.loads(meta.read_text()), "format": "assay.minhash-index/99"}))


@pytest.mark.parametrize("damage, extra, words", [
    (None, ["--num-perm", "64"], "was built with"),  # another configuration's index
    (_bad_format, [], "cannot be used"),  # an index.json of a format this code cannot read
    (_corrupt_shingles, [], "not a whole number"),  # an index part altered after the fact
])
def test_an_unusable_against_index_fails_in_one_line(copyright_rows: list[dict], tmp_path: Path,
                                                     damage, extra: list[str], words: str) -> None:
    _registry_or_skip()
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text("".join(json.dumps({"id": r["id"], "text": r["text"]}) + "\n" for r in copyright_rows[:120]))
    b.write_text("".join(json.dumps({"id": r["id"], "text": r["text"]}) + "\n" for r in copyright_rows[100:200]))
    run = CliRunner()
    assert run.invoke(dedup, ["minhash", str(a), str(tmp_path / "snap1")]).exit_code == 0
    if damage is not None:
        damage(tmp_path / "snap1")
    r = run.invoke(dedup, ["minhash", str(b), str(tmp_path / "out"), "--against", str(tmp_path / "snap1"), *extra])
    assert r.exit_code == 1, (r.output, r.exception)
    lines = [ln for ln in r.output.splitlines() if ln.startswith("Error:")]
    assert len(lines) == 1 and words in lines[0], r.output
    assert not (tmp_path / "out" / "manifest.json").exists()


_AS_ASSAY = (  # `python -m pipeline.cli ...` as the process's main module, reporting pandas at exit
    "import atexit, runpy, sys; "
    "atexit.register(lambda: print('pandas imported:', 'pandas' in sys.modules)); "
    "sys.argv = ['assay', *sys.argv[1:]]; "
    "runpy.run_module('pipeline.cli', run_name='__main__', alter_sys=True)"
)


def test_assay_process_runs_without_pandas_and_writes_the_same_bytes(copyright_rows: list[dict],
                                                                     tmp_path: Path) -> None:
    import subprocess
    import sys

    pytest.importorskip("pandas")  # where it is installed pyarrow would import it
    _registry_or_skip()
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"id": r["id"], "text": r["text"]}) + "\n" for r in copyright_rows[:200]))
    repo = Path(__file__).resolve().parents[2]
    p = subprocess.run([sys.executable, "-c", _AS_ASSAY, "dedup", "minhash", str(src), str(tmp_path / "a")],
                       cwd=repo, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "pandas imported: False" in p.stdout, p.stdout
    import pandas  # noqa: F401  # in this process pandas is imported: the bytes must not care

    r = CliRunner().invoke(dedup, ["minhash", str(src), str(tmp_path / "b")])
    assert r.exit_code == 0, r.output

    shards = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a" / "shards").glob("*.parquet"))
    assert shards
    for s in shards:
        assert (tmp_path / "a" / s).read_bytes() == (tmp_path / "b" / s).read_bytes()
    ma, mb = (json.loads((tmp_path / d / "manifest.json").read_text()) for d in "ab")
    assert ma["totals"] == mb["totals"] and ma["snapshot_id"] == mb["snapshot_id"]
