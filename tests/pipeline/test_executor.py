"""Executors: same spec and input -> same manifest, whatever runs it; resume after SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline.run import run_spec
from pipeline.spec import PipelineSpec

REPO = Path(__file__).resolve().parents[2]


def _write_shards(docs: list[dict], folder: Path, n_shards: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    per = len(docs) // n_shards
    for s in range(n_shards):
        with open(folder / f"shard-{s:02d}.jsonl", "w") as fh:
            for i, d in enumerate(docs[s * per:(s + 1) * per]):
                fh.write(json.dumps({"id": f"{s}-{i}", "text": d["text"], "url": d.get("url"), "kind": d.get("kind")}) + "\n")
        # exact re-posts of a few docs from the first shard, so dedup has cross-shard work
        if s > 0:
            with open(folder / f"shard-{s:02d}.jsonl", "a") as fh:
                for i, d in enumerate(docs[:3]):
                    fh.write(json.dumps({"id": f"repost-{s}-{i}", "text": d["text"], "url": None}) + "\n")


def _spec_data(inp: Path, out: Path) -> dict:
    return {
        "name": "exec-test",
        "input": {"paths": [str(inp)]},
        "output": {"dir": str(out), "rows_per_row_group": 50},
        "execution": {"batch_size": 64},
        "stages": [
            {"kind": "filter.length", "min_chars": 300},
            {"kind": "dedup.exact"},
            {"kind": "pii.redact"},
        ],
    }


@pytest.fixture(scope="module")
def shards(tmp_path_factory, raw_docs) -> Path:
    folder = tmp_path_factory.mktemp("shards")
    _write_shards(raw_docs[:480], folder, 8)
    return folder


@pytest.fixture(scope="module")
def reference(shards: Path, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("ref") / "snap"
    return run_spec(PipelineSpec.from_dict(_spec_data(shards, out)), progress=False)


def test_local_run_writes_a_consistent_snapshot(reference: dict, shards: Path):
    st = reference["stats"]
    assert st["docs_in"] == 480 + 7 * 3
    assert st["stages"]["dedup.exact"]["dropped"]["exact_duplicate"] >= 21
    assert st["docs_in"] == st["kept"] + st["dropped"] + st["quarantined"]
    assert reference["totals"]["rows"] == st["kept"]
    names = {f["name"] for f in reference["schema"]}
    assert {"doc_id", "text", "source", "url", "id", "kind", "pii.count"} <= names


def test_rerun_of_a_finished_run_is_a_no_op_with_the_same_manifest(reference: dict, shards: Path, tmp_path: Path):
    out = tmp_path / "snap"
    spec = PipelineSpec.from_dict(_spec_data(shards, out))
    first = run_spec(spec, progress=False)
    again = run_spec(spec, progress=False)
    assert first == again == reference


def test_process_pool_gives_the_same_manifest(reference: dict, shards: Path, tmp_path: Path):
    m = run_spec(PipelineSpec.from_dict(_spec_data(shards, tmp_path / "snap")), progress=False, workers=2)
    assert m == reference


def test_split_reads_each_file_as_several_shards_with_the_same_documents(reference: dict, shards: Path, tmp_path: Path):
    import pyarrow.dataset as ds

    data = _spec_data(shards, tmp_path / "snap")
    data["input"]["split"] = 3
    m = run_spec(PipelineSpec.from_dict(data), progress=False, workers=2)
    assert len({s["input"] for s in m["shards"]}) == 8 and m["totals"]["shards"] == 24
    assert m["stats"]["docs_in"] == reference["stats"]["docs_in"]
    assert m["stats"]["kept"] == reference["stats"]["kept"]
    got = sorted(ds.dataset(tmp_path / "snap" / "shards", format="parquet").to_table(columns=["doc_id"]).column(0).to_pylist())
    assert len(got) == len(set(got)) == reference["totals"]["rows"]


def test_other_spec_in_same_output_is_refused(reference: dict, shards: Path, tmp_path: Path):
    from pipeline.spec import SpecError

    out = tmp_path / "snap"
    run_spec(PipelineSpec.from_dict(_spec_data(shards, out)), progress=False)
    data = _spec_data(shards, out)
    data["stages"][0]["min_chars"] = 10
    with pytest.raises(SpecError, match="another spec"):
        run_spec(PipelineSpec.from_dict(data), progress=False)


def _markers(out: Path) -> int:
    return len(list((out / "_work" / "markers").rglob("*.json"))) if (out / "_work" / "markers").exists() else 0


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_sigkill_at_any_point_then_resume_gives_the_same_manifest(reference: dict, shards: Path, tmp_path: Path,
                                                                  workers: int):
    """kill -9 of the whole job (driver and, with workers=2, its pool) at several points."""
    out = tmp_path / "snap"
    spec_path = tmp_path / "spec.toml"
    data = _spec_data(shards, out)
    import tomllib  # noqa: F401  (spec written as TOML the way users write it)

    spec_path.write_text(_to_toml(data))
    cmd = [sys.executable, "-m", "pipeline.cli", "run", str(spec_path), "--no-progress", "--workers", str(workers)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    kills = 0
    # 8 shards x 2 segments + 1 reduce = 17 markers; kill after 1, 4, 9 (after the reduce), 12
    for target in (1, 4, 9, 12):
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                start_new_session=True)
        deadline = time.time() + 120
        while proc.poll() is None and _markers(out) < target and time.time() < deadline:
            time.sleep(0.005)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the driver and its worker processes at once
            proc.wait()
            kills += 1
        assert not (out / "manifest.json").exists() or proc.returncode == 0
    assert kills >= 2, "the run finished before it could be killed; make the workload bigger"
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    resumed = json.loads((out / "manifest.json").read_text())
    assert resumed == reference
    for s in resumed["shards"]:
        assert pq.read_metadata(out / s["path"]).num_rows == s["rows"]
    assert not list((out / "shards").glob(".*tmp*")), "temp files left behind"


def _to_toml(data: dict) -> str:
    lines = [f'name = "{data["name"]}"']
    for table in ("input", "output", "execution"):
        lines.append(f"[{table}]")
        for k, v in data[table].items():
            lines.append(f"{k} = {json.dumps(v)}")
    for st in data["stages"]:
        lines.append("[[stages]]")
        for k, v in st.items():
            lines.append(f"{k} = {json.dumps(v)}")
    return "\n".join(lines) + "\n"


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_ray_executor_gives_the_same_manifest(reference: dict, shards: Path, tmp_path: Path):
    pytest.importorskip("ray")
    m = run_spec(PipelineSpec.from_dict(_spec_data(shards, tmp_path / "snap")), ray="auto", progress=False)
    assert m == reference


def test_each_segment_hands_out_its_largest_shards_first(raw_docs, tmp_path: Path, monkeypatch):
    """Shards run largest first — segment 0 by input bytes, later segments by the rows the
    previous segment kept — so that a segment's last tasks are its smallest and the workers
    reach the barrier together; the snapshot lists its shards in input order all the same."""
    from pipeline import _trace

    inp = tmp_path / "in"
    inp.mkdir()
    sizes = [20, 60, 10, 40, 30]  # docs per shard: the input bytes follow
    k = 0
    for s, n in enumerate(sizes):
        with open(inp / f"s{s}.jsonl", "w") as fh:
            for d in raw_docs[k:k + n]:
                fh.write(json.dumps({"id": f"{s}-{k}", "text": d["text"]}) + "\n")
                k += 1
    data = {"name": "order", "input": {"paths": [str(inp)]}, "output": {"dir": str(tmp_path / "out")},
            "stages": [{"kind": "filter.length", "min_chars": 300}, {"kind": "dedup.exact"}]}
    trace = tmp_path / "trace"
    trace.mkdir()
    monkeypatch.setenv(_trace.ENV, str(trace))
    m = run_spec(PipelineSpec.from_dict(data), progress=False, workers=1)
    ran = [e["what"] for e in _trace.load(trace) if " shard " in e["what"]]
    seg0 = [int(w.rsplit(" ", 1)[1]) for w in ran if w.startswith("seg0 ")]
    by_bytes = sorted(range(5), key=lambda s: -(inp / f"s{s}.jsonl").stat().st_size)
    assert seg0 == by_bytes != list(range(5)), (seg0, by_bytes)
    markers = {json.loads(p.read_text())["shard"]: json.loads(p.read_text())["rows"]
               for p in (tmp_path / "out" / "_work" / "markers" / "seg0").glob("*.json")}
    seg1 = [int(w.rsplit(" ", 1)[1]) for w in ran if w.startswith("seg1 ")]
    assert seg1 == sorted(range(5), key=lambda s: -markers[s]), (seg1, markers)
    assert [s["path"] for s in m["shards"]] == sorted(s["path"] for s in m["shards"])
