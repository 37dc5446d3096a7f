"""`assay serve --ray ADDRESS`: the job's worker process runs the spec on a real Ray cluster
(`ray start --head` that the test starts, with token auth) and publishes the same snapshot —
manifest for manifest — as a server without Ray given the same spec."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import httpx
import pytest

from bench._raycluster import LocalRayCluster
from tests.pipeline.svc_util import REPO, LiveServer, auth, cli, wait_job

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def _submit_demo(srv: LiveServer, tok: str) -> str:
    r = httpx.post(srv.url + "/v1/jobs", content=(REPO / "examples" / "demo.toml").read_bytes(),
                   headers={**auth(tok), "content-type": "application/toml"}, timeout=60)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _driver_logs(cluster: LocalRayCluster) -> list[Path]:
    """Log files of drivers that connected to the cluster (one per `ray.init` against it)."""
    return sorted(cluster.head_dir.glob("session_*/logs/python-core-driver-*.log"))


@pytest.mark.timeout(420)
def test_serve_with_ray_gives_the_local_jobs_manifest(tmp_path: Path):
    inputs = tmp_path / "in"
    (inputs / "examples" / "data").mkdir(parents=True)
    for f in sorted((REPO / "examples" / "data").glob("*.warc.gz")):  # the demo spec's relative glob
        shutil.copy(f, inputs / "examples" / "data" / f.name)

    local_root, ray_root = tmp_path / "local" / "svc", tmp_path / "ray" / "svc"
    local_root.parent.mkdir()
    ray_root.parent.mkdir()
    tok_local = cli("token", "create", "--root", str(local_root), "--role", "submit", "--name", "t").stdout.strip()
    tok_ray = cli("token", "create", "--root", str(ray_root), "--role", "submit", "--name", "t").stdout.strip()

    local = LiveServer(local_root, [inputs], max_jobs=1).start()
    try:
        local_job = _submit_demo(local, tok_local)  # runs while the Ray cluster starts
        # one CPU: the runner's actors take fractions of it, leaving room for Ray Data's read tasks
        with LocalRayCluster(head_cpus=1, head_only=True) as cluster:
            before = _driver_logs(cluster)
            srv_env = {**cluster.env, "PYTHONPATH": str(REPO) + (os.pathsep + os.environ["PYTHONPATH"]
                                                                  if os.environ.get("PYTHONPATH") else "")}
            srv = LiveServer(ray_root, [inputs], max_jobs=1, extra=["--ray", cluster.address], env=srv_env).start()
            try:
                ray_job = _submit_demo(srv, tok_ray)
                j_ray = wait_job(lambda p, headers: httpx.get(srv.url + p, headers=headers), ray_job, auth(tok_ray),
                                 timeout=300)
                logs = httpx.get(srv.url + f"/v1/jobs/{ray_job}/logs", headers=auth(tok_ray)).text
                assert j_ray["status"] == "succeeded", (j_ray, logs[-3000:],
                                                         (ray_root / "logs" / f"{ray_job}.log").read_text()[-3000:])
                r = httpx.get(srv.url + f"/v1/snapshots/{j_ray['snapshot_id']}", headers=auth(tok_ray), timeout=60)
                assert r.status_code == 200, r.text
                m_ray = r.json()
            finally:
                srv.stop()
            # the job's worker really was a driver on this cluster (not a silent local run)
            assert len(_driver_logs(cluster)) > len(before)
        j_local = wait_job(lambda p, headers: httpx.get(local.url + p, headers=headers), local_job, auth(tok_local),
                           timeout=300)
        assert j_local["status"] == "succeeded", j_local
        r = httpx.get(local.url + f"/v1/snapshots/{j_local['snapshot_id']}", headers=auth(tok_local), timeout=60)
        assert r.status_code == 200, r.text
        m_local = r.json()
    finally:
        local.stop()

    assert m_ray["shards"] and sum(s["rows"] for s in m_ray["shards"]) > 0
    assert j_ray["snapshot_id"] == j_local["snapshot_id"]
    assert m_ray == m_local
