"""Jobs out of the API process: cancel and resume, a crashed worker, the cleanup policy, and a
server SIGKILLed mid-job and restarted (queued stay queued, running resume to the same snapshot)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from tests.pipeline.svc_util import LiveServer, auth, cli, wait_job, write_inputs

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from pipeline.service import create_app  # noqa: E402

STAGES = [{"kind": "filter.gopher_quality", "min_doc_words": 20}, {"kind": "dedup.exact"}]
FILES = 120


@pytest.fixture()
def many(tmp_path: Path, raw_docs) -> Path:
    """120 input files: a job long enough (a few seconds of shard work) to be caught mid-run.
    (24 files of 15 docs once were; with faster filters their first segment took ~0.2 s and a
    cancel could land after it.)"""
    return write_inputs(tmp_path / "crawl", raw_docs, files=FILES, per_file=30)


def _spec(name: str = "long") -> dict:
    return {"name": name, "input": {"paths": ["."]}, "stages": STAGES}


@pytest.fixture()
def reference(tmp_path: Path, many: Path) -> str:
    """The snapshot id an uninterrupted local run of the same spec gives."""
    from pipeline.run import run_spec
    from pipeline.spec import PipelineSpec

    spec = PipelineSpec.from_dict({**_spec(), "input": {"paths": [str(many)]}, "output": {"dir": str(tmp_path / "ref")}})
    return run_spec(spec, progress=False)["snapshot_id"]


def _wait(pred, timeout: float = 60, step: float = 0.05):  # type: ignore[no-untyped-def]
    t0 = time.time()
    while time.time() - t0 < timeout:
        v = pred()
        if v:
            return v
        time.sleep(step)
    raise AssertionError("condition not reached")


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_cancel_stops_fast_and_resubmission_resumes(tmp_path: Path, many: Path, reference: str):
    root = tmp_path / "svc"
    app = create_app(root, [many])
    _, tok = app.state.catalog.create_token("t", "submit")
    h = auth(tok)
    with TestClient(app) as c:
        jid = c.post("/v1/jobs", json=_spec(), headers=h).json()["id"]
        _wait(lambda: ((c.get(f"/v1/jobs/{jid}", headers=h).json().get("progress") or {}).get("segments") or [{}])[0]
              .get("shards_done", 0) >= 2)
        t0 = time.time()
        r = c.post(f"/v1/jobs/{jid}/cancel", headers=h)
        assert r.status_code == 202
        job = wait_job(c.get, jid, h, timeout=15)
        assert job["status"] == "cancelled" and time.time() - t0 < 5
        assert c.post(f"/v1/jobs/{jid}/cancel", headers=h).status_code == 409
        work = [p for p in (root / "work").iterdir() if not p.name.startswith("_")]
        assert len(work) == 1
        kept = list((work[0] / "_work" / "markers" / "seg0").glob("part-*.json"))
        assert 2 <= len(kept) < FILES  # partial output kept
        jid2 = c.post("/v1/jobs", json=_spec(), headers=h).json()["id"]
        job2 = wait_job(c.get, jid2, h)
        assert job2["status"] == "succeeded", job2
        assert job2["snapshot_id"] == reference
        assert "resuming from completion markers" in c.get(f"/v1/jobs/{jid2}/logs", headers=h).text
        # a queued job is cancelled at once
        app.state.supervisor.max_jobs = 0
        jid3 = c.post("/v1/jobs", json=_spec("other"), headers=h).json()["id"]
        assert c.post(f"/v1/jobs/{jid3}/cancel", headers=h).json()["status"] == "cancelled"


def test_crashed_worker_fails_with_the_error_and_is_cleaned(tmp_path: Path, many: Path, catalog_url: str | None):
    root = tmp_path / "svc"
    app = create_app(root, [many], catalog=catalog_url)
    _, tok = app.state.catalog.create_token("t", "submit")
    h = auth(tok)
    with TestClient(app) as c:
        jid = c.post("/v1/jobs", json=_spec(), headers=h).json()["id"]
        pid = _wait(lambda: (app.state.catalog.job(jid) or {}).get("pid"))
        _wait(lambda: (c.get(f"/v1/jobs/{jid}", headers=h).json().get("progress") or {}).get("fraction", 0) > 0)
        os.kill(pid, signal.SIGKILL)
        job = wait_job(c.get, jid, h, timeout=15)
        assert job["status"] == "failed"
        assert "killed by signal 9" in job["error"]
        work = root / "work" / app.state.catalog.job(jid)["work_key"]
        assert work.is_dir()
        sup = app.state.supervisor
        assert sup.clean() == 0  # within the keep period
        # resubmitting the crashed job's spec resumes from its markers
        again = wait_job(c.get, c.post("/v1/jobs", json=_spec(), headers=h).json()["id"], h)
        assert again["status"] == "succeeded"
        assert "resuming from completion markers" in c.get(f"/v1/jobs/{again['id']}/logs", headers=h).text
        # the cleanup policy removes a failed job's folder once it is older than the keep period
        jid = c.post("/v1/jobs", json=_spec("crash-again"), headers=h).json()["id"]
        pid = _wait(lambda: (app.state.catalog.job(jid) or {}).get("pid"))
        _wait(lambda: (c.get(f"/v1/jobs/{jid}", headers=h).json().get("progress") or {}).get("fraction", 0) > 0)
        os.kill(pid, signal.SIGKILL)
        assert wait_job(c.get, jid, h, timeout=15)["status"] == "failed"
        work = root / "work" / app.state.catalog.job(jid)["work_key"]
        assert work.is_dir()
        sup.keep_failed_s = 0
        assert sup.clean() == 1 and not work.exists()
        assert app.state.catalog.job(jid)["cleaned"] == 1


@pytest.mark.slow
def test_server_sigkill_restart_resumes_same_snapshot(tmp_path: Path, many: Path, reference: str,
                                                      catalog_url: str | None):
    """`assay serve` (and `assay token create`) on SQLite and with --catalog postgresql://..."""
    root = tmp_path / "svc"
    cat_args = ["--catalog", catalog_url] if catalog_url else []
    tok = cli("token", "create", "--root", str(root), *cat_args, "--role", "submit", "--name", "t").stdout.strip()
    h = auth(tok)
    srv = LiveServer(root, [many], catalog=catalog_url, max_jobs=1).start()
    try:
        a = httpx.post(srv.url + "/v1/jobs", json=_spec(), headers=h).json()["id"]
        b = httpx.post(srv.url + "/v1/jobs", json=_spec("second"), headers=h).json()["id"]

        def prog() -> bool:
            p = httpx.get(f"{srv.url}/v1/jobs/{a}", headers=h).json().get("progress") or {}
            return (p.get("segments") or [{}])[0].get("shards_done", 0) >= 3

        _wait(prog)
        pid = httpx.get(f"{srv.url}/v1/jobs/{a}", headers=h).json()
        from pipeline.service.catalog import Catalog
        from pipeline.service.catalog import catalog_url as catalog_url_for

        cat = Catalog(catalog_url_for(root, catalog_url))
        worker_pid = cat.job(a)["pid"]
        srv.kill()
        _wait(lambda: not _alive(worker_pid), timeout=10)  # the worker dies with its server
        assert cat.job(a)["status"] == "running" and cat.job(b)["status"] == "queued"
        srv.start()
        ja = wait_job(lambda p, headers: httpx.get(srv.url + p, headers=headers), a, h, timeout=120)
        jb = wait_job(lambda p, headers: httpx.get(srv.url + p, headers=headers), b, h, timeout=120)
        assert ja["status"] == "succeeded" and ja["attempts"] == 2, ja
        assert ja["snapshot_id"] == reference
        assert jb["status"] == "succeeded" and jb["attempts"] == 1
        assert jb["started_at"] >= ja["started_at"]
        logs = httpx.get(f"{srv.url}/v1/jobs/{a}/logs", headers=h).text
        assert "resuming from completion markers" in logs
        _ = pid
    finally:
        srv.stop()
