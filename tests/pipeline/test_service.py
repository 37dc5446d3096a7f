"""The REST service end to end: submit, follow, pull, names, dedup of snapshots — on SQLite and on
a real PostgreSQL server that the tests start themselves. Jobs run in real worker processes."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.pipeline.svc_util import auth, wait_job, write_inputs

fastapi = pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from pipeline.service import create_app  # noqa: E402

SPEC = 'name = "rest"\n[input]\npaths = ["{path}"]\n[output]\ndir = "/etc/ignored"\n[[stages]]\nkind = "dedup.exact"\n'


@pytest.fixture()
def inputs(tmp_path: Path, raw_docs) -> Path:
    return write_inputs(tmp_path / "crawl", raw_docs)


def _no_server_paths(text: str, *paths: Path) -> None:
    for p in paths:
        assert str(p) not in text, f"response leaks the server path {p}"


def test_submit_follow_pull_and_store_once(tmp_path: Path, inputs: Path, catalog_url: str | None):
    root = tmp_path / "svc"
    app = create_app(root, [inputs], catalog=catalog_url)
    _, tok = app.state.catalog.create_token("alice", "submit")
    h = auth(tok)
    with TestClient(app) as c:
        r = c.post("/v1/jobs", content=SPEC.format(path="docs-000.jsonl"), headers={**h, "content-type": "application/toml"})
        assert r.status_code == 201, r.text
        assert r.json()["status"] == "queued"
        job = wait_job(c.get, r.json()["id"], h)
        assert job["status"] == "succeeded", job
        assert job["attempts"] == 1
        assert job["stats"]["stages"][1]["dropped"] == {"exact_duplicate": 1}
        assert job["progress"]["fraction"] == 1.0
        assert [s["shards_done"] for s in job["progress"]["segments"]] == [1, 1]
        sid = job["snapshot_id"]

        snaps = c.get("/v1/snapshots", headers=h)
        assert [s["id"] for s in snaps.json()["items"]] == [sid]
        assert snaps.json()["items"][0]["aliases"] == ["rest@latest"]
        assert c.get("/v1/snapshots?name=rest", headers=h).json()["total"] == 1
        assert c.get("/v1/snapshots?name=other", headers=h).json()["total"] == 0
        m = c.get(f"/v1/snapshots/{sid}", headers=h)
        for resp in (snaps, m, c.get(f"/v1/jobs/{job['id']}", headers=h), c.get(f"/v1/snapshots/{sid}/lineage", headers=h)):
            _no_server_paths(resp.text, root, inputs, tmp_path)
        man = m.json()
        assert man["totals"]["rows"] == 150
        assert c.get("/v1/snapshots/rest@latest", headers=h).json()["snapshot_id"] == sid

        r = c.get(f"/v1/snapshots/{sid}/shards/0", headers=h)
        assert r.status_code == 200
        assert r.headers["etag"] == f'"{man["shards"][0]["sha256"]}"'
        assert int(r.headers["content-length"]) == man["shards"][0]["bytes"]
        assert pq.read_table(io.BytesIO(r.content)).num_rows == man["shards"][0]["rows"]
        part = c.get(f"/v1/snapshots/{sid}/shards/0", headers={**h, "Range": "bytes=4-99"})
        assert part.status_code == 206 and part.content == r.content[4:100]
        assert c.get(f"/v1/snapshots/{sid}/shards/7", headers=h).status_code == 404
        # immutable and verified: files are read-only; a damaged copy is never served
        shard_file = root / "snapshots" / sid / man["shards"][0]["path"]
        assert not shard_file.stat().st_mode & 0o222

        lin = c.get(f"/v1/snapshots/{sid}/lineage", headers=h).json()
        assert lin["job"]["id"] == job["id"] and lin["spec"]["stages"][0]["kind"] == "dedup.exact"
        logs = c.get(f"/v1/jobs/{job['id']}/logs", headers=h).text
        assert "snapshot " + sid in logs and "1/1 shard(s) done" in logs

        # the same spec over the same inputs again: no second copy, the same snapshot at once
        r2 = c.post("/v1/jobs", json={"name": "rest", "input": {"paths": [str(inputs / "docs-000.jsonl")]},
                                      "stages": [{"kind": "dedup.exact"}]}, headers=h)
        assert r2.status_code == 201 and r2.json()["status"] == "succeeded", r2.text
        assert c.get(f"/v1/jobs/{r2.json()['id']}", headers=h).json()["snapshot_id"] == sid
        assert [p.name for p in (root / "snapshots").iterdir()] == [sid]

        # jobs are paged and filtered
        page = c.get("/v1/jobs?status=succeeded&limit=1", headers=h).json()
        assert page["total"] == 2 and len(page["items"]) == 1 and page["next_offset"] == 1
        assert c.get("/v1/jobs?status=failed", headers=h).json()["total"] == 0
        data = bytearray(shard_file.read_bytes())
        data[100] ^= 0xFF
        shard_file.chmod(0o644)
        shard_file.write_bytes(bytes(data))
        bad = c.get(f"/v1/snapshots/{sid}/shards/0", headers=h)
        assert bad.status_code == 503 and "sha256" in bad.json()["detail"]
        metrics = c.get("/metrics", headers=h).text
        assert 'assay_jobs{state="succeeded"} 2.0' in metrics
        assert 'assay_stage_docs_out{kind="dedup.exact"} 150.0' in metrics
        assert "assay_http_request_seconds_bucket" in metrics


def test_events_stream_resumes_by_last_event_id(tmp_path: Path, inputs: Path, catalog_url: str | None):
    app = create_app(tmp_path / "svc", [inputs], catalog=catalog_url)
    _, tok = app.state.catalog.create_token("t", "submit")
    h = auth(tok)
    with TestClient(app) as c:
        jid = c.post("/v1/jobs", json={"input": {"paths": ["docs-000.jsonl"]}, "stages": [{"kind": "dedup.exact"}]},
                     headers=h).json()["id"]
        wait_job(c.get, jid, h)

        def read(extra: dict[str, str]) -> list[tuple[str, str, str]]:
            out, cur = [], {}
            with c.stream("GET", f"/v1/jobs/{jid}/events", headers={**h, **extra}) as r:
                assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
                for line in r.iter_lines():
                    if not line.strip():
                        if cur:
                            out.append((cur.get("id", ""), cur.get("event", ""), cur.get("data", "")))
                        cur = {}
                        continue
                    k, _, v = line.partition(":")
                    cur[k] = v.strip()
            return out

        full = read({})
        kinds = [e[1] for e in full]
        assert kinds[0] == "state" and kinds[-1] == "end" and "progress" in kinds and "log" in kinds
        assert json.loads(full[-1][2]) == {"status": "succeeded"}
        ids = [int(e[0]) for e in full if e[0]]
        assert ids == sorted(ids)
        mid = ids[len(ids) // 2]
        rest = read({"Last-Event-ID": str(mid)})
        assert [int(e[0]) for e in rest if e[0]] == [i for i in ids if i > mid]


def test_a_job_faster_than_the_progress_poll_still_sends_its_final_progress(tmp_path: Path, inputs: Path,
                                                                           monkeypatch):
    monkeypatch.setenv("ASSAY_PROGRESS_INTERVAL_S", "60")  # the job ends long before the first poll
    app = create_app(tmp_path / "svc", [inputs])
    _, tok = app.state.catalog.create_token("t", "submit")
    h = auth(tok)
    with TestClient(app) as c:
        jid = c.post("/v1/jobs", json={"input": {"paths": ["docs-000.jsonl"]}, "stages": [{"kind": "dedup.exact"}]},
                     headers=h).json()["id"]
        assert wait_job(c.get, jid, h)["status"] == "succeeded"
        with c.stream("GET", f"/v1/jobs/{jid}/events", headers=h) as r:
            events = [ln.partition(":")[2].strip() for ln in r.iter_lines() if ln.startswith(("event:", "data:"))]
    kinds, datas = events[0::2], events[1::2]
    assert kinds.count("progress") == 1, kinds
    prog = json.loads(datas[kinds.index("progress")])
    assert prog["fraction"] == 1.0 and prog["stats_so_far"]["docs_in"] > 0, prog
    assert kinds.index("progress") < len(kinds) - 2 and kinds[-2:] == ["state", "end"], kinds


@pytest.mark.parametrize("bad", ["abc", "0", "-1", "nan"])
def test_a_bad_progress_interval_is_one_line_naming_the_variable(bad: str):
    import os
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-c", "import pipeline.service.worker"], capture_output=True, text=True,
                       env={**os.environ, "ASSAY_PROGRESS_INTERVAL_S": bad}, timeout=60)
    assert r.returncode == 1 and r.stderr.strip().count("\n") == 0, r.stderr
    assert r.stderr.startswith("ASSAY_PROGRESS_INTERVAL_S:") and "Traceback" not in r.stderr


def test_token_cli_roles_and_revoke(tmp_path: Path):
    from tests.pipeline.svc_util import cli

    root = tmp_path / "svc"
    r = cli("token", "create", "--root", str(root), "--role", "read", "--name", "ci reader")
    tok = r.stdout.strip()
    assert tok.startswith("assay_") and len(tok) > 40
    db = (root / "catalog.sqlite").read_bytes()
    assert tok.encode() not in db  # stored hashed
    listed = cli("token", "list", "--root", str(root)).stdout
    assert "ci reader" in listed and "live" in listed and tok not in listed
    app = create_app(root, [])
    with TestClient(app) as c:
        assert c.get("/v1/jobs", headers=auth(tok)).status_code == 200
        tid = listed.split()[0]
        assert "revoked 1" in cli("token", "revoke", "--root", str(root), tid).stdout
        assert c.get("/v1/jobs", headers=auth(tok)).status_code == 401
    assert cli("token", "revoke", "--root", str(root), "nope", check=False).returncode == 2


def test_serve_warns_without_tls_off_loopback(tmp_path: Path):
    import subprocess
    import sys

    from tests.pipeline.svc_util import env, free_port

    p = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "serve", "--root", str(tmp_path / "svc"), "--host", "0.0.0.0",
                          "--port", str(free_port())], env=env(), stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    try:
        t0 = time.time()
        line = ""
        while time.time() - t0 < 30 and "warning" not in line:
            line = p.stderr.readline()
        assert "without TLS" in line
    finally:
        p.kill()
        p.wait(10)


def test_api_process_never_imports_torch(tmp_path: Path, inputs: Path):
    import subprocess
    import sys

    from tests.pipeline.svc_util import env

    code = f"""
import sys, json
from fastapi.testclient import TestClient
from pipeline.service import create_app
app = create_app({str(tmp_path / 'svc')!r}, [{str(inputs)!r}], run_jobs=False)
_, tok = app.state.catalog.create_token('t', 'admin')
h = {{'Authorization': 'Bearer ' + tok}}
with TestClient(app) as c:
    assert c.get('/v1/stages', headers=h).status_code == 200
    spec = {{'input': {{'paths': ['docs-000.jsonl']}}, 'stages': [{{'kind': 'lid.fasttext'}}, {{'kind': 'classify.perplexity', 'model_path': 'nope'}}]}}
    assert c.post('/v1/jobs', json=spec, headers=h).status_code == 422
    assert c.get('/openapi.json', headers=h).status_code == 200; c.get('/metrics', headers=h)
print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers', 'ray', 'vllm'))))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env(), timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def j2_rows(c, h, job) -> int:
    return c.get(f"/v1/snapshots/{job['snapshot_id']}", headers=h).json()["totals"]["rows"]


def test_lineage_from_declared_snapshot_reads(tmp_path: Path, raw_docs):
    """dedup.minhash `against` a catalog snapshot by id or name@alias: the new snapshot's parent."""
    inputs = write_inputs(tmp_path / "crawl", raw_docs[:80], files=2, per_file=40, dup=False)
    app = create_app(tmp_path / "svc", [inputs])
    _, tok = app.state.catalog.create_token("t", "admin")
    h = auth(tok)
    with TestClient(app) as c:
        first = {"name": "base", "input": {"paths": ["docs-000.jsonl"]}, "stages": [{"kind": "dedup.minhash"}]}
        j1 = wait_job(c.get, c.post("/v1/jobs", json=first, headers=h).json()["id"], h)
        assert j1["status"] == "succeeded", j1
        second = {"name": "incr", "input": {"paths": ["docs-001.jsonl"]},
                  "stages": [{"kind": "dedup.minhash", "against": ["base@latest"]}]}
        r = c.post("/v1/jobs", json=second, headers=h)
        assert r.status_code == 201, r.text
        j2 = wait_job(c.get, r.json()["id"], h)
        assert j2["status"] == "succeeded", j2
        lin = c.get(f"/v1/snapshots/{j2['snapshot_id']}/lineage", headers=h).json()
        assert lin["parents"] == [j1["snapshot_id"]]
        assert c.get(f"/v1/snapshots/{j1['snapshot_id']}/lineage", headers=h).json()["children"] == [j2["snapshot_id"]]
        assert [s["id"] for s in c.get(f"/v1/snapshots?parent={j1['snapshot_id']}", headers=h).json()["items"]] == [j2["snapshot_id"]]
        assert "against" in json.dumps(lin["spec"]) and str(tmp_path) not in json.dumps(lin)
        # reading a catalog snapshot as input makes it a parent too
        third = {"name": "reread", "input": {"paths": [f"snapshot:{j2['snapshot_id']}"]}, "stages": [{"kind": "dedup.exact"}]}
        j3 = wait_job(c.get, c.post("/v1/jobs", json=third, headers=h).json()["id"], h)
        assert j3["status"] == "succeeded", j3
        assert c.get(f"/v1/snapshots/{j3['snapshot_id']}/lineage", headers=h).json()["parents"] == [j2["snapshot_id"]]
        assert c.get(f"/v1/snapshots/{j3['snapshot_id']}", headers=h).json()["totals"]["rows"] == j2_rows(c, h, j2)
        assert c.delete(f"/v1/snapshots/{j3['snapshot_id']}", headers=h).status_code == 204
        # a parent cannot be deleted while a child names it; the child can (admin only)
        assert c.delete(f"/v1/snapshots/{j1['snapshot_id']}", headers=h).status_code == 409
        assert c.delete(f"/v1/snapshots/{j2['snapshot_id']}", headers=h).status_code == 204
        assert c.get(f"/v1/snapshots/{j2['snapshot_id']}", headers=h).status_code == 404
        assert not (tmp_path / "svc" / "snapshots" / j2["snapshot_id"]).exists()
        r = c.post("/v1/jobs", json={**second, "stages": [{"kind": "dedup.minhash", "against": ["snapshot:nope"]}]}, headers=h)
        assert r.status_code == 422 and "no snapshot" in r.json()["detail"]
