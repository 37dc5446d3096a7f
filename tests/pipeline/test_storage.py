"""Remote storage: a run whose inputs, shards, artifacts, barrier state and markers live on S3
(moto's standalone server on loopback) writes the same manifest as the local run."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline import storage
from pipeline.executor import ShardWorker
from pipeline.run import run_spec
from pipeline.spec import PipelineSpec
from tests.pipeline.test_executor import _spec_data, _to_toml, _write_shards
from tests.s3server import moto_s3

REPO = Path(__file__).resolve().parents[2]


def test_remote_path_keeps_the_url_and_joins_like_a_path():
    p = storage.as_loc("s3://bucket/runs/x/")
    assert isinstance(p, storage.RemotePath) and str(p) == "s3://bucket/runs/x"
    q = p / "shards" / "part-00000-a.parquet"
    assert str(q) == "s3://bucket/runs/x/shards/part-00000-a.parquet"
    assert q.name == "part-00000-a.parquet" and q.parent.parent == p
    assert q.relative_to(p) == "shards/part-00000-a.parquet"
    assert isinstance(storage.as_loc("runs/x"), Path) and isinstance(storage.as_loc("file:///tmp/x"), Path)
    assert not q.is_relative_to(Path("/")), "a URL is never under a local root (the service relies on it)"


def test_glob_and_listing_on_an_fsspec_url():
    root = storage.as_loc("memory://assay-test/glob")
    for name in ("a/1.jsonl", "a/2.jsonl.gz", "b/c/3.jsonl", "x.txt"):
        storage.write_bytes(root / name, b"{}\n")
    names = [f.relative_to(root) for f in storage.glob("memory://assay-test/glob/**/*.jsonl")]
    assert names == ["a/1.jsonl", "b/c/3.jsonl"]
    assert [f.relative_to(root) for f in storage.glob("memory://assay-test/glob/a/*")] == ["a/1.jsonl", "a/2.jsonl.gz"]
    assert storage.is_dir(root / "a") and storage.is_file(root / "x.txt") and not storage.exists(root / "nope")
    storage.remove_tree(root)
    assert storage.list_files(root) == []


@pytest.fixture(scope="module")
def s3(monkeypatch_module) -> dict[str, str]:
    with moto_s3("assay") as env:
        for k, v in env.items():
            monkeypatch_module.setenv(k, v)
        storage._filesystem.cache_clear()
        yield env
    storage._filesystem.cache_clear()


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


@pytest.fixture(scope="module")
def local_inputs(tmp_path_factory, raw_docs) -> Path:
    folder = tmp_path_factory.mktemp("s3in")
    _write_shards(raw_docs[:240], folder, 4)
    return folder


@pytest.fixture(scope="module")
def local_ref(local_inputs: Path, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("s3ref") / "snap"
    return run_spec(PipelineSpec.from_dict(_spec_data(local_inputs, out)), progress=False)


def _without_input_paths(m: dict) -> dict:
    m = copy.deepcopy(m)
    m["spec"]["input"].pop("paths")
    return m


@pytest.mark.timeout(300)
def test_outputs_on_s3_give_the_local_manifest(s3: dict, local_inputs: Path, local_ref: dict):
    out = "s3://assay/runs/out-only"
    m = run_spec(PipelineSpec.from_dict(_spec_data(local_inputs, out)), progress=False)  # type: ignore[arg-type]
    assert m == local_ref
    stored = storage.read_json(f"{out}/manifest.json")
    assert stored == local_ref
    for s in stored["shards"]:  # the shard bytes on S3 are the ones the manifest names
        assert storage.sha256(f"{out}/{s['path']}") == s["sha256"]
    names = {str(f.relative_to(storage.as_loc(out))) for f in storage.list_files(out)}
    assert any(n.startswith("state/dedup.exact/") for n in names), "barrier state is kept with the snapshot"
    assert not any(".tmp" in n for n in names), "object stores get no temp objects (no rename there)"


@pytest.mark.timeout(300)
def test_inputs_and_outputs_on_s3_and_resume_give_the_local_manifest(s3: dict, local_inputs: Path, local_ref: dict,
                                                                     monkeypatch):
    for f in sorted(local_inputs.iterdir()):
        storage.write_bytes(f"s3://assay/inputs/{f.name}", f.read_bytes())
    out = "s3://assay/runs/all-remote"
    spec = PipelineSpec.from_dict(_spec_data("s3://assay/inputs", out))  # type: ignore[arg-type]
    first = run_spec(spec, progress=False)
    assert _without_input_paths(first) == _without_input_paths(local_ref)
    assert first["spec"]["input"]["paths"] == ["s3://assay/inputs"]
    # a run that dies after 6 shard tasks (4 of segment 0, the reduce, 2 of segment 1), then resumes
    out2 = "s3://assay/runs/all-remote-crash"
    spec2 = PipelineSpec.from_dict(_spec_data("s3://assay/inputs", out2))  # type: ignore[arg-type]
    real_run = ShardWorker.run
    calls = {"n": 0}

    def dying_run(self, *a, **kw):
        calls["n"] += 1
        if calls["n"] == 7:
            raise RuntimeError("simulated crash")
        return real_run(self, *a, **kw)

    monkeypatch.setattr(ShardWorker, "run", dying_run)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_spec(spec2, progress=False)
    monkeypatch.setattr(ShardWorker, "run", real_run)
    assert not storage.exists(f"{out2}/manifest.json")
    assert len(storage.list_files(f"{out2}/_work/markers/seg1")) == 2
    again = run_spec(spec2, progress=False)
    assert _without_input_paths(again) == _without_input_paths(first)
    t = pq.read_table(storage.open_input_file(f"{out}/{first['shards'][0]['path']}"))
    assert t.num_rows == first["shards"][0]["rows"]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_cli_run_on_s3_with_two_workers_and_verify(s3: dict, local_inputs: Path, local_ref: dict, tmp_path: Path):
    """The CLI with workers=2 (each worker process reaches S3 from the AWS_* variables alone)."""
    out = "s3://assay/runs/cli-2w"
    spec_path = tmp_path / "spec.toml"
    spec_path.write_text(_to_toml(_spec_data(local_inputs, out)))  # type: ignore[arg-type]
    env = {**os.environ, **s3}
    r = subprocess.run([sys.executable, "-m", "pipeline.cli", "run", str(spec_path), "--workers", "2", "--no-progress", "--json"],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads(r.stdout) == local_ref
    v = subprocess.run([sys.executable, "-m", "pipeline.cli", "verify", out], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=120)
    assert v.returncode == 0, v.stderr + v.stdout
    assert f"{local_ref['totals']['shards']} shards" in v.stdout


def _barriers_spec(inp: Path | str, out: str) -> dict:
    d = _spec_data(inp, out)  # type: ignore[arg-type]
    d["stages"] = [{"kind": "filter.length", "min_chars": 300}, {"kind": "dedup.exact"},
                   {"kind": "dedup.minhash", "mode": "remove"}, {"kind": "dedup.softdedup", "width_log2": 16},
                   {"kind": "filter.threshold", "column": "weight", "min_percentile": 5}]
    return d


@pytest.fixture(scope="module")
def barrier_inputs(tmp_path_factory, raw_docs) -> Path:
    """The 4 shards plus near-duplicates (a doc of shard 0 with a line added) in shards 1-3,
    so MinHash has clusters to find across shards (exact dedup does not catch them)."""
    folder = tmp_path_factory.mktemp("s3barriers")
    _write_shards(raw_docs[:240], folder, 4)
    for s in (1, 2, 3):
        with open(folder / f"shard-{s:02d}.jsonl", "a") as fh:
            for j in range(10, 14):
                d = raw_docs[j]
                fh.write(json.dumps({"id": f"near-{s}-{j}", "text": d["text"] + f"\nMirrored copy {s}.", "url": None}) + "\n")
    return folder


@pytest.fixture(scope="module")
def barrier_ref(barrier_inputs: Path, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("s3barref") / "snap"
    ref = run_spec(PipelineSpec.from_dict(_barriers_spec(barrier_inputs, str(out))), progress=False)
    assert ref["stats"]["stages"]["dedup.minhash"]["dropped"].get("near_duplicate", 0) >= 9, ref["stats"]["stages"]
    return ref


@pytest.mark.timeout(300)
def test_reduces_on_s3_run_in_the_pool_and_give_the_local_manifest(s3: dict, barrier_inputs: Path, barrier_ref: dict):
    """With outputs on S3 the reduce tasks of every barrier run in the process pool (not one by
    one on the driver), and the snapshot is the local single-process one."""
    ref = barrier_ref
    out = "s3://assay/runs/pool-reduce"
    m = run_spec(PipelineSpec.from_dict(_barriers_spec(barrier_inputs, out)), progress=False, workers=2, partitions=2)
    assert m == ref
    for stage in ("dedup.exact", "dedup.minhash", "dedup.softdedup", "filter.threshold"):
        marker = storage.read_json(f"{out}/_work/markers/reduce-{stage}.json")
        assert marker["ran"] == ["pool"], (stage, marker)
        assert marker["partitions"] == 2
        # the tasks ran in the pool's processes, none in the driver
        assert marker["task_processes"] and marker["driver"] not in marker["task_processes"], marker
    assert storage.list_files(f"{out}/_work/reduce") == [], "reduce scratch on S3 is cleared through storage"


@pytest.mark.timeout(300)
def test_reduces_on_s3_read_and_write_through_storage_and_stage_nothing_locally(
        s3: dict, barrier_inputs: Path, barrier_ref: dict, monkeypatch):
    """Every barrier's reduce tasks (exact, MinHash with its components rounds, SoftDedup,
    threshold percentiles) and their apply take URLs: with every way of making a local copy
    (storage's download/upload helpers, temp folders and files) made to fail, the run on S3
    still gives the local snapshot, and its scratch lived on S3 (cleared at the end)."""
    import tempfile

    ref = barrier_ref
    seen_scratch: set[str] = set()
    real_write = storage.write_bytes

    def spy_write(loc, data):  # scratch objects written by the reduce tasks (in this process)
        if "/_work/reduce/" in str(loc):
            seen_scratch.add(str(loc).split("/_work/reduce/", 1)[1].split("/", 1)[0])
        return real_write(loc, data)

    def no_staging(*a, **kw):
        raise AssertionError(f"local staging of remote reduce files: {a!r}")

    for name in ("local_file", "local_dir", "staged_dir"):
        monkeypatch.setattr(storage, name, no_staging)
    monkeypatch.setattr(tempfile, "mkdtemp", no_staging)
    monkeypatch.setattr(tempfile, "mkstemp", no_staging)
    monkeypatch.setattr(storage, "write_bytes", spy_write)
    out = "s3://assay/runs/no-staging"
    m = run_spec(PipelineSpec.from_dict(_barriers_spec(barrier_inputs, out)), progress=False, partitions=2)
    assert m == ref
    assert seen_scratch >= {"dedup.minhash"}, seen_scratch  # the components rounds' inboxes went to S3
    for stage in ("dedup.exact", "dedup.minhash", "dedup.softdedup", "filter.threshold"):
        marker = storage.read_json(f"{out}/_work/markers/reduce-{stage}.json")
        assert marker["ran"] == ["inline"] and marker["task_processes"] == [marker["driver"]], marker
    names = {str(f.relative_to(storage.as_loc(out))) for f in storage.list_files(out)}
    assert "state/dedup.minhash/index.json" in names and "state/filter.threshold/threshold.json" in names
    assert any(n.startswith("state/dedup.minhash/index/part-") for n in names)
    assert not any(n.startswith("_work/reduce/") for n in names), "scratch is deleted through storage"


@pytest.mark.timeout(300)
def test_minhash_against_a_snapshot_on_s3_gives_the_same_snapshot_as_against_it_locally(
        s3: dict, barrier_inputs: Path, tmp_path: Path):
    """``dedup.minhash`` ``against`` names an earlier snapshot by URL: its index is found and
    read through storage, and the run keeps exactly what it keeps against the local copy."""
    def spec(inp: Path, out: Path, against: list[str]) -> PipelineSpec:
        d = _spec_data(inp, out)
        d["stages"] = [{"kind": "dedup.minhash", "mode": "remove", "against": against}]
        return PipelineSpec.from_dict(d)

    first = tmp_path / "first"
    run_spec(spec(barrier_inputs / "shard-00.jsonl", first, []), progress=False)
    url = "s3://assay/runs/against-first"
    for f in storage.list_files(first):
        storage.copy_file(f, f"{url}/{f.relative_to(first)}")
    local = run_spec(spec(barrier_inputs, tmp_path / "vs-local", [str(first)]), progress=False)
    remote = run_spec(spec(barrier_inputs, tmp_path / "vs-s3", [url]), progress=False, workers=2, partitions=2)
    alone = run_spec(spec(barrier_inputs, tmp_path / "alone", []), progress=False)
    assert [s["sha256"] for s in remote["shards"]] == [s["sha256"] for s in local["shards"]]
    assert remote["stats"]["stages"] == local["stats"]["stages"]
    # the earlier snapshot's docs were really deduped against: shard 0 again is all duplicates
    n_first = sum(s["rows"] for s in storage.read_json(first / "manifest.json")["shards"])
    dropped = remote["stats"]["stages"]["dedup.minhash"]["dropped"].get("near_duplicate", 0)
    assert dropped >= alone["stats"]["stages"]["dedup.minhash"]["dropped"].get("near_duplicate", 0) + n_first // 2
    index = storage.read_json(tmp_path / "vs-s3" / "state" / "dedup.minhash" / "index.json")
    assert index["against"] == [f"{url}/state/dedup.minhash"] and index["against_docs"] == n_first


@pytest.mark.timeout(300)
def test_show_takes_a_snapshot_url(s3: dict, local_inputs: Path, local_ref: dict):
    from click.testing import CliRunner

    from pipeline.cli import main

    out = "s3://assay/runs/show"
    run_spec(PipelineSpec.from_dict(_spec_data(local_inputs, out)), progress=False)  # type: ignore[arg-type]
    r = CliRunner().invoke(main, ["show", out])
    assert r.exit_code == 0, r.output
    assert f"snapshot {local_ref['snapshot_id']}" in r.output
    assert f"{local_ref['totals']['rows']:,} docs in {local_ref['totals']['shards']} shard(s)" in r.output
    r = CliRunner().invoke(main, ["show", f"{out}/manifest.json"])
    assert r.exit_code == 0 and local_ref["snapshot_id"] in r.output
    missing = CliRunner().invoke(main, ["show", "s3://assay/runs/no-such-snapshot"])
    assert missing.exit_code == 2
    assert "is not a snapshot: no manifest.json" in missing.output and "Traceback" not in missing.output


def test_show_and_verify_refuse_unusable_urls_in_one_line():
    """An unknown scheme, or one fsspec cannot open without options, is a one-line usage error."""
    from click.testing import CliRunner

    from pipeline.cli import main

    for cmd in ("show", "verify"):
        for url, why in (("nosuch://bucket/snap", "Protocol not known"), ("ftp://../etc/passwd", "host")):
            r = CliRunner().invoke(main, [cmd, url])
            assert r.exit_code == 2, (cmd, url, r.output)
            assert f"{url.split(':')[0]}:// locations cannot be opened" in r.output and why in r.output
            assert r.exception is None or isinstance(r.exception, SystemExit)


class _CountAll:
    """A third-party barrier written against POSIX paths (``reduce(paths, state_dir)`` only)."""

    @staticmethod
    def make():  # the class is built lazily so that importing this module registers nothing
        import pyarrow as pa

        from pipeline.stage import BarrierStage, StageContext

        class CountAll(BarrierStage):
            kind = "test.count_all"
            inputs = ("doc_id",)
            summary = "counts every document (test stage)"

            def map(self, table: pa.Table, ctx: StageContext) -> pa.Table:
                return pa.table({"doc_id": table.column("doc_id").cast(pa.string())})

            def reduce(self, artifact_paths, state_dir, partitions=1):  # type: ignore[no-untyped-def]
                assert all(isinstance(p, Path) and p.is_file() for p in artifact_paths), artifact_paths
                assert isinstance(state_dir, Path) and state_dir.is_dir()
                n = sum(pq.read_metadata(p).num_rows for p in artifact_paths)
                (state_dir / "count.json").write_text(json.dumps({"docs": n}))

            def load_state(self, state_dir):  # type: ignore[no-untyped-def]
                assert isinstance(state_dir, Path), "a stage without remote_state gets a local copy"
                self.n = json.loads((state_dir / "count.json").read_text())["docs"]

            def process(self, table: pa.Table, ctx: StageContext) -> pa.Table:
                ctx.add("corpus_docs_seen", self.n)
                return table

        return CountAll


@pytest.mark.timeout(300)
def test_a_third_party_barrier_with_a_posix_reduce_still_runs_on_s3(s3: dict, local_inputs: Path, tmp_path: Path,
                                                                     monkeypatch):
    """Stages that implement only ``reduce(paths, state_dir)`` on local paths keep working on
    remote storage: the task gets local copies in its own process and its state is uploaded."""
    from pipeline import registry

    monkeypatch.setitem(registry._REGISTRY, "test.count_all", _CountAll.make())
    d = _spec_data(local_inputs, tmp_path / "ref")  # type: ignore[arg-type]
    d["stages"] = [{"kind": "dedup.exact"}, {"kind": "test.count_all"}]
    ref = run_spec(PipelineSpec.from_dict(d), progress=False)
    out = "s3://assay/runs/third-party"
    m = run_spec(PipelineSpec.from_dict({**d, "output": {**d["output"], "dir": out}}), progress=False)
    assert m == ref
    n = storage.read_json(f"{out}/state/test.count_all/count.json")["docs"]
    assert n == ref["stats"]["stages"]["dedup.exact"]["docs_out"]


def test_reduce_io_helpers_work_the_same_on_a_url_and_a_local_path(tmp_path: Path):
    """The reduce tasks' I/O helpers (pipeline.reduce): .npy sketches (SoftDedup), .npz inboxes
    (MinHash components), scratch Parquet with row-group pruning, listings that skip temp files."""
    import numpy as np
    import pyarrow as pa

    from pipeline import reduce as rd

    rng = np.random.default_rng(0)
    sketch = rng.poisson(3, size=(2, 5000)).astype(np.uint32)
    table = pa.table({"shard": pa.array(np.repeat(np.arange(4, dtype=np.int32), 50)),
                      "doc_id": pa.array([f"d{i}" for i in range(200)])})
    for base in (str(tmp_path / "local"), "memory://assay-test/reduce-io"):
        rd.save_npy(rd.join(base, "s.npy"), sketch)
        assert np.array_equal(rd.load_npy(rd.join(base, "s.npy")), sketch)
        if storage.is_url(base):  # compressed on an object store (a sketch is mostly small counts)
            assert storage.size(rd.join(base, "s.npy")) < sketch.nbytes
        rd.save_npz(rd.join(base, "in", "to-00000", "from-00001.npz"), src=sketch[0], dst=sketch[1])
        rd.put_bytes(rd.join(base, "in", "to-00000", ".from-00002.tmp.npz"), b"half-written")
        (f,) = rd.list_folder(rd.join(base, "in", "to-00000"), ".npz")
        z = rd.load_npz(f)
        assert np.array_equal(z["src"], sketch[0]) and np.array_equal(z["dst"], sketch[1])
        rd.write_scratch_table(rd.join(base, "t.parquet"), table, row_group_size=50)
        got = rd.read_parquet(rd.join(base, "t.parquet"), filters=[("shard", "=", 2)])
        assert got.column("doc_id").to_pylist() == [f"d{i}" for i in range(100, 150)]
        assert rd.parquet_file(rd.join(base, "t.parquet")).num_row_groups == 4
        storage.remove_tree(base)
        assert storage.list_files(base) == []
