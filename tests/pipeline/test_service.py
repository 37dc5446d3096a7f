"""The REST service, in-process over real HTTP semantics (FastAPI TestClient)."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

fastapi = pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from pipeline.service import create_app  # noqa: E402


@pytest.fixture()
def inputs(tmp_path: Path, raw_docs) -> Path:
    d = tmp_path / "crawl"
    d.mkdir()
    with open(d / "docs.jsonl", "w") as fh:
        for i, doc in enumerate(raw_docs[:150]):
            fh.write(json.dumps({"id": i, "text": doc["text"]}) + "\n")
        fh.write(json.dumps({"id": "dup", "text": raw_docs[0]["text"]}) + "\n")
    return d


def _wait(client: TestClient, job_id: str) -> dict:
    for _ in range(600):
        j = client.get(f"/jobs/{job_id}").json()
        if j["status"] in ("succeeded", "failed"):
            return j
        time.sleep(0.1)
    raise AssertionError("job did not finish")


def test_submit_job_browse_snapshot_and_stream_shard(tmp_path: Path, inputs: Path):
    client = TestClient(create_app(tmp_path / "svc", [inputs]))
    spec = f'name = "rest"\n[input]\npaths = ["{inputs}"]\n[output]\ndir = "/etc/ignored"\n[[stages]]\nkind = "dedup.exact"\n'
    r = client.post("/jobs", content=spec, headers={"content-type": "application/toml"})
    assert r.status_code == 202, r.text
    job = _wait(client, r.json()["job_id"])
    assert job["status"] == "succeeded", job
    assert job["stats"]["stages"][1]["dropped"] == {"exact_duplicate": 1}
    snaps = client.get("/snapshots").json()
    assert [s["snapshot_id"] for s in snaps] == [job["snapshot_id"]]
    assert snaps[0]["path"].startswith(str(tmp_path / "svc" / "snapshots"))  # not /etc
    m = client.get(f"/snapshots/{job['snapshot_id']}").json()
    assert m["totals"]["rows"] == 150
    r = client.get(f"/snapshots/{job['snapshot_id']}/shards/0")
    assert r.status_code == 200 and r.headers["x-shard-sha256"] == m["shards"][0]["sha256"]
    assert pq.read_table(io.BytesIO(r.content)).num_rows == m["shards"][0]["rows"]
    assert client.get(f"/snapshots/{job['snapshot_id']}/shards/7").status_code == 404


def test_bad_specs_are_rejected_with_the_field(tmp_path: Path, inputs: Path):
    client = TestClient(create_app(tmp_path / "svc", [inputs]))
    bad = {"input": {"paths": [str(inputs)]}, "stages": [{"kind": "dedup.exact", "lowercase": "maybe"}]}
    r = client.post("/jobs", json=bad)
    assert r.status_code == 422 and "stages[0] (dedup.exact).lowercase" in r.json()["detail"]
    outside = {"input": {"paths": [str(Path(__file__))]}, "stages": []}
    r = client.post("/jobs", json=outside)
    assert r.status_code == 422 and "outside the service's input roots" in r.json()["detail"]
    r = client.post("/jobs", json={"input": {"paths": ["python:os.system"]}, "stages": [{"kind": "os.system"}]})
    assert r.status_code == 422
