"""Ray for real: a two-node cluster (`ray start --head` + `ray start --address`), outputs on
shared storage (moto S3, a local folder), the worker node's raylet killed mid-run, and
`--ray auto` next to a dead cluster's address file. Each gives the LocalExecutor's manifest."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from bench._raycluster import LocalRayCluster
from pipeline.run import run_spec
from pipeline.spec import PipelineSpec
from tests.pipeline.test_executor import _spec_data, _to_toml, _write_shards
from tests.s3server import moto_s3

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.ray, pytest.mark.slow]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, raw_docs) -> Path:
    folder = tmp_path_factory.mktemp("rayin")
    _write_shards(raw_docs[:480], folder, 8)
    return folder


@pytest.fixture(scope="module")
def reference(inputs: Path, tmp_path_factory) -> dict:
    return run_spec(PipelineSpec.from_dict(_spec_data(inputs, tmp_path_factory.mktemp("rayref") / "snap")), progress=False)


def _markers(out: Path) -> int:
    return len(list((out / "_work" / "markers").rglob("*.json"))) if (out / "_work" / "markers").exists() else 0


def _manifest_out(out: str) -> dict:
    """The manifest `assay run --json` printed (Ray may print its own notices before it)."""
    start = 0 if out.startswith("{") else out.index("\n{") + 1
    return json.JSONDecoder().raw_decode(out[start:])[0]


def _assay(args: list[str], env: dict[str, str], timeout: float, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pipeline.cli", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


@pytest.mark.timeout(600)
def test_two_node_cluster_s3_outputs_and_a_killed_worker_raylet(inputs: Path, reference: dict, tmp_path: Path,
                                                                monkeypatch):
    """Outputs on shared storage (S3 via moto); the worker node's raylet SIGKILLed while shards
    are in flight: the run finishes, with the LocalExecutor's manifest."""
    from pipeline import storage

    with moto_s3("assay") as s3env, LocalRayCluster(env=s3env) as cluster:
        for k, v in s3env.items():
            monkeypatch.setenv(k, v)
        storage._filesystem.cache_clear()
        out = "s3://assay/ray/snap"
        spec = tmp_path / "s3.toml"
        spec.write_text(_to_toml(_spec_data(inputs, out)))  # type: ignore[arg-type]
        p = _assay(["run", str(spec), "--ray", cluster.address, "--no-progress", "--json"], cluster.env, 400)
        deadline = time.time() + 240
        markers = 0
        while p.poll() is None and markers < 3 and time.time() < deadline:
            time.sleep(0.2)
            markers = len(storage.list_files(f"{out}/_work/markers"))
        assert p.poll() is None, "the run ended before the raylet could be killed"
        cluster.kill_worker_raylet()
        killed_at = len(storage.list_files(f"{out}/_work/markers"))
        stdout, err = p.communicate(timeout=400)
        assert p.returncode == 0, err[-3000:]
        assert killed_at < 17, "the kill came after the last shard"
        assert _manifest_out(stdout) == reference
        assert storage.read_json(f"{out}/manifest.json") == reference
        for s in reference["shards"]:
            assert storage.sha256(f"{out}/{s['path']}") == s["sha256"]
        # the reduce tasks read and write S3 themselves: plain Ray tasks, on whichever node is alive
        red = storage.read_json(f"{out}/_work/markers/reduce-dedup.exact.json")
        assert red["ran"] == ["ray"], red
    storage._filesystem.cache_clear()


@pytest.mark.timeout(600)
def test_a_killed_ray_worker_process_is_retried_and_the_run_finishes_with_the_local_manifest(
        inputs: Path, reference: dict, tmp_path: Path):
    """The short form of `assay bench reliability --modes ray-workers`: one shard actor (or reduce
    task) SIGKILLed while shards are in flight; the driver lives and the run finishes by itself."""
    import random

    out = tmp_path / "snap"
    spec = tmp_path / "spec.toml"
    spec.write_text(_to_toml(_spec_data(inputs, out)))
    with LocalRayCluster() as cluster:
        p = _assay(["run", str(spec), "--ray", cluster.address, "--no-progress", "--json"], cluster.env, 400)
        deadline = time.time() + 240
        while p.poll() is None and _markers(out) < 2 and time.time() < deadline:
            time.sleep(0.1)
        assert p.poll() is None, "the run ended before a worker could be killed"
        killed = cluster.kill_worker_process(random.Random(0))
        killed_at = _markers(out)
        stdout, err = p.communicate(timeout=400)
    assert p.returncode == 0, err[-3000:]
    assert killed.startswith("ray::") and killed_at < 17, (killed, killed_at)
    assert _manifest_out(stdout) == reference


@pytest.mark.timeout(600)
def test_s3_reduces_run_as_ray_tasks_on_another_node_than_the_driver(inputs: Path, tmp_path: Path, monkeypatch):
    """Every barrier (exact, MinHash, SoftDedup, threshold percentiles) with outputs on S3, the
    driver on a node without CPUs (deploy/'s API container joins the cluster so): the reduce
    tasks read artifacts and write scratch and state on S3 themselves, so they run on the
    worker node — nothing is staged on the driver's machine — and give the local snapshot."""
    from pipeline import storage
    from tests.pipeline.test_storage import _barriers_spec

    ref = run_spec(PipelineSpec.from_dict(_barriers_spec(inputs, str(tmp_path / "ref"))), progress=False)
    with moto_s3("assay") as s3env, LocalRayCluster(head_cpus=0, env=s3env) as cluster:
        for k, v in s3env.items():
            monkeypatch.setenv(k, v)
        storage._filesystem.cache_clear()
        out = "s3://assay/ray/cpu-less-head"
        spec = tmp_path / "s3.toml"
        spec.write_text(_to_toml(_barriers_spec(inputs, out)))  # type: ignore[arg-type]
        p = _assay(["run", str(spec), "--ray", cluster.address, "--no-progress", "--json"], cluster.env, 400)
        stdout, err = p.communicate(timeout=400)
        assert p.returncode == 0, err[-3000:]
        assert _manifest_out(stdout) == ref
        for stage in ("dedup.exact", "dedup.minhash", "dedup.softdedup", "filter.threshold"):
            red = storage.read_json(f"{out}/_work/markers/reduce-{stage}.json")
            driver_node = red["driver"].rsplit(":", 1)[0]
            task_nodes = {t.rsplit(":", 1)[0] for t in red["task_processes"]}
            assert red["ran"] == ["ray"] and task_nodes and driver_node not in task_nodes, red
        assert storage.list_files(f"{out}/_work/reduce") == []
    storage._filesystem.cache_clear()


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again: nothing listens there


@pytest.mark.timeout(300)
def test_ray_auto_next_to_a_dead_clusters_address_file_starts_fresh(inputs: Path, reference: dict, tmp_path: Path):
    """Ray keeps <tmp>/ray/ray_current_cluster after a cluster dies; `--ray auto` used to retry
    that address for minutes. Now it says so and starts a fresh local cluster at once."""
    ray_tmp = Path(tempfile.mkdtemp(prefix="art", dir="/tmp"))  # short: Ray's sockets live under it
    try:
        (ray_tmp / "ray").mkdir()
        (ray_tmp / "ray" / "ray_current_cluster").write_text(f"127.0.0.1:{_dead_port()}")
        env = {**os.environ, "RAY_TMPDIR": str(ray_tmp)}
        env.pop("RAY_ADDRESS", None)
        spec = tmp_path / "spec.toml"
        spec.write_text(_to_toml(_spec_data(inputs, tmp_path / "snap")))
        t0 = time.time()
        p = _assay(["run", str(spec), "--ray", "auto", "--no-progress", "--json"], env, 240, start_new_session=True)
        try:
            out, err = p.communicate(timeout=240)
        finally:
            if p.poll() is None:
                os.killpg(p.pid, 9)
        assert p.returncode == 0, err[-3000:]
        assert "stale Ray cluster address" in err
        assert _manifest_out(out) == reference
        assert time.time() - t0 < 200
        # an explicit dead address fails in seconds with a message naming it
        dead = f"127.0.0.1:{_dead_port()}"
        t0 = time.time()
        r = subprocess.run([sys.executable, "-m", "pipeline.cli", "run", str(spec), "--ray", dead, "--no-progress"],
                           cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
        assert r.returncode == 2 and f"--ray {dead}: no Ray cluster answers" in r.stderr
        assert time.time() - t0 < 30
    finally:
        import shutil

        shutil.rmtree(ray_tmp, ignore_errors=True)
