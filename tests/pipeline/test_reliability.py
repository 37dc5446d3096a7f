"""Reliability: corrupt shards are caught by sha256, changed inputs by content fingerprint,
shard files are fsynced before their markers, stages are torn down, memory is checked."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import storage
from pipeline.filters.basic import LengthFilterStage
from pipeline.run import run_spec
from pipeline.spec import PipelineSpec, SpecError
from tests.pipeline.test_executor import _spec_data, _write_shards

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, raw_docs) -> Path:
    folder = tmp_path_factory.mktemp("relin")
    _write_shards(raw_docs[:160], folder, 4)
    return folder


@pytest.fixture(scope="module")
def snapshot(inputs: Path, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("relsnap") / "snap"
    return out, run_spec(PipelineSpec.from_dict(_spec_data(inputs, out)), progress=False)


def _flip_a_bit(path: Path, offset: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    i = len(data) // 2 if offset is None else offset
    data[i] ^= 0x01
    path.write_bytes(bytes(data))


def _copy_snapshot(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("_work"))
    return dst


def test_verify_passes_on_an_intact_snapshot_and_names_a_flipped_bit(snapshot, tmp_path: Path):
    src, manifest = snapshot
    ok = subprocess.run([sys.executable, "-m", "pipeline.cli", "verify", str(src)], cwd=REPO,
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert f"{manifest['totals']['shards']} shards" in ok.stdout
    snap = _copy_snapshot(src, tmp_path / "snap")
    bad = snap / manifest["shards"][1]["path"]
    _flip_a_bit(bad)  # same size, one bit: only a content hash can tell
    r = subprocess.run([sys.executable, "-m", "pipeline.cli", "verify", str(snap)], cwd=REPO,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    assert bad.name in r.stderr and "sha256" in r.stderr
    assert "1 problem(s)" in r.stderr


def test_every_reader_of_a_snapshot_detects_a_corrupt_shard(snapshot, tmp_path: Path):
    from curriculum.snapshot_io import read_snapshot
    from pipeline.manifest import CorruptShardError
    from trainer_bridge.snapshot import CorruptShardError as TrainerCorrupt
    from trainer_bridge.snapshot import read_manifest, shard_files

    src, manifest = snapshot
    snap = _copy_snapshot(src, tmp_path / "snap")
    assert read_snapshot(snap).num_rows == manifest["totals"]["rows"]  # intact: reads
    assert len(shard_files(snap, read_manifest(snap))) == manifest["totals"]["shards"]
    bad = snap / manifest["shards"][2]["path"]
    _flip_a_bit(bad, offset=bad.stat().st_size - 40)  # inside the footer's metadata
    with pytest.raises(CorruptShardError, match="sha256"):
        read_snapshot(snap)  # curriculum builder
    with pytest.raises(TrainerCorrupt, match="sha256"):
        shard_files(snap, read_manifest(snap))  # trainer: tokenizer training, token cache, eval
    # the pipeline reading the snapshot as its input: the bad shard is quarantined, not read
    again = run_spec(PipelineSpec.from_dict({
        "name": "reread", "input": {"paths": [str(snap)]}, "output": {"dir": str(tmp_path / "re")},
        "stages": [{"kind": "filter.length", "min_chars": 1}]}), progress=False)
    q = again["stats"]["stages"]["read"]["quarantined"]
    assert q == {"corrupt_shard": 1}
    assert again["stats"]["docs_in"] == again["stats"]["kept"] + again["stats"]["dropped"] + again["stats"]["quarantined"]
    assert again["totals"]["rows"] == manifest["totals"]["rows"] - manifest["shards"][2]["rows"]


def test_input_changed_between_kill_and_resume_is_refused(inputs: Path, tmp_path: Path, monkeypatch):
    import shutil

    from pipeline.executor import ShardWorker

    inp = tmp_path / "in"
    shutil.copytree(inputs, inp)
    spec = PipelineSpec.from_dict(_spec_data(inp, tmp_path / "snap"))
    real_run = ShardWorker.run
    calls = {"n": 0}

    def dying_run(self, *a, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("killed")
        return real_run(self, *a, **kw)

    monkeypatch.setattr(ShardWorker, "run", dying_run)
    with pytest.raises(RuntimeError):
        run_spec(spec, progress=False)
    monkeypatch.setattr(ShardWorker, "run", real_run)
    # edit one character of the last input: same name, same size, different content
    f = sorted(inp.iterdir())[-1]
    data = f.read_bytes()
    i = data.index(b'"text": "') + 12
    f.write_bytes(data[:i] + (b"X" if data[i:i + 1] != b"X" else b"Y") + data[i + 1:])
    assert len(f.read_bytes()) == len(data)
    with pytest.raises(SpecError, match=f"{f.name}.*content changed.*refusing to mix"):
        run_spec(spec, progress=False)
    f.write_bytes(data)  # restored: the resume goes on
    st = run_spec(spec, progress=False)["stats"]
    assert st["docs_in"] == st["kept"] + st["dropped"] + st["quarantined"] == 160 + 3 * 3


def test_shard_files_are_fsynced_before_their_marker(inputs: Path, tmp_path: Path, monkeypatch):
    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        try:
            events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        except OSError:
            pass
        real_fsync(fd)

    def replace(a, b) -> None:
        events.append(("replace", str(b)))
        real_replace(a, b)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    out = tmp_path / "snap"
    m = run_spec(PipelineSpec.from_dict(_spec_data(inputs, out)), progress=False)
    for entry in m["shards"]:
        final = str(out / entry["path"])
        i_pub = events.index(("replace", final))
        fsynced_before = [p for kind, p in events[:i_pub] if kind == "fsync"]
        assert any(Path(p).name.startswith(f".{Path(final).name}.tmp") for p in fsynced_before), f"{final} not fsynced"
        shard_no = Path(final).name.split("-")[1]
        marker = str(out / "_work" / "markers" / "seg1" / f"part-{shard_no}.json")
        assert events.index(("replace", marker)) > i_pub, "marker published before its shard"
        assert ("fsync", str(out / "shards")) in events[i_pub:], "the folder holding the rename is fsynced"


def test_teardown_is_called_once_per_stage_after_the_run(inputs: Path, tmp_path: Path, monkeypatch):
    from dedup.exact import ExactDedupStage

    torn: list[str] = []
    monkeypatch.setattr(LengthFilterStage, "teardown", lambda self: torn.append(self.name), raising=False)
    monkeypatch.setattr(ExactDedupStage, "teardown", lambda self: torn.append(self.name), raising=False)
    run_spec(PipelineSpec.from_dict(_spec_data(inputs, tmp_path / "snap")), progress=False)
    assert sorted(torn) == ["dedup.exact", "filter.length"]


def test_declared_memory_beyond_the_machine_fails_before_any_work(inputs: Path, tmp_path: Path, monkeypatch):
    from pipeline.stage import Resources

    monkeypatch.setattr(LengthFilterStage, "resources", Resources(memory_gb=100_000.0))
    out = tmp_path / "snap"
    with pytest.raises(SpecError, match="memory_gb"):
        run_spec(PipelineSpec.from_dict(_spec_data(inputs, out)), progress=False, workers=2)
    assert not out.exists()


def test_remote_commit_needs_no_rename(tmp_path: Path):
    """On an fsspec store the writer PUTs at the final key; nothing is renamed or left behind."""
    import pyarrow as pa

    from pipeline.writers import ParquetShardWriter

    loc = storage.as_loc("memory://assay-rel/shards/part-00000-x.parquet")
    w = ParquetShardWriter(loc, row_group_rows=2)
    w.write(pa.table({"doc_id": ["a", "b"], "text": ["x y", "z"]}))
    w.write(pa.table({"doc_id": ["c"], "text": ["w"], "extra": [1]}))  # schema grows: parts merged
    assert w.close()
    names = [f.name for f in storage.list_files("memory://assay-rel/shards")]
    assert names == ["part-00000-x.parquet"]
    import pyarrow.parquet as pq

    t = pq.read_table(storage.open_input_file(loc))
    assert t.column("doc_id").to_pylist() == ["a", "b", "c"] and t.column("extra").to_pylist() == [None, None, 1]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_kill_9_during_a_reduce_and_the_manifest_write_with_two_workers(tmp_path: Path):
    """The short form of `assay bench reliability` (the bench does 20 points, local and Ray)."""
    from bench.reliability import PHASES, make_corpus, run_points

    inp = make_corpus(tmp_path / "in", 240, 4)
    res = run_points("local2", 2, tmp_path, inp, 4, seed=1, log=lambda *_: None, phases=(PHASES[2], PHASES[4]))
    assert res["killed"] == 2, res["results"]
    assert {r["killed_in"] for r in res["results"]} <= {PHASES[2], PHASES[3], PHASES[4]}
    assert res["identical"] == 2 and res["lost"] == 0 and res["duplicated"] == 0, res["results"]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_disk_full_gives_a_clear_error_leaves_nothing_corrupt_and_resumes(tmp_path: Path):
    """A run whose output is on a tmpfs a third of the snapshot's size (mount needs root)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    from bench.reliability import disk_full, make_corpus

    inp = make_corpus(tmp_path / "in", 160, 2)
    res = disk_full(tmp_path, inp, 2, log=lambda *_: None)
    assert "skipped" not in res, res
    assert res["first_rc"] == 2 and "no space left on the device" in res["error"], res
    assert "run the same command again to resume" in res["error"]
    assert res["corrupt_after_enospc"] == []
    assert res["resume_rc"] == 0 and res["identical_after_resume"] is True


def test_a_point_whose_kill_never_landed_is_reported_and_not_counted_as_a_pass():
    """`bench reliability`'s counts: a point with no kill (the run ended first, nothing to kill)
    is `not_landed`, never `identical`, even though its run finished with the right bytes."""
    from bench.reliability import summarize

    ok = {"killed_in": "reduce", "identical": True, "lost": 0, "duplicated": 0, "run_rc": 0}
    missed = {"killed_in": None, "identical": True, "lost": 0, "duplicated": 0, "run_rc": 0,
              "not_landed": "the manifest was written before the kill"}
    s = summarize("ray-workers", [ok, missed, dict(ok, killed_in="read")])
    assert (s["points"], s["killed"], s["not_landed"], s["identical"]) == (3, 2, 1, 2)
    assert s["killed_in"] == {"reduce": 1, "read": 1} and s["finished_without_resume"] == 2
    bad = dict(ok, identical=False, lost=3)
    assert summarize("local2", [bad, missed])["identical"] == 0 and summarize("local2", [bad])["lost"] == 3
