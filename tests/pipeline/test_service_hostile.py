"""Hostile input the audit of stop 17 found in the REST service: a NUL character anywhere (a 500 on
PostgreSQL, whose text columns cannot hold one) and ``output.tokenizer``, a path the service passed
on unconfined (a file outside the input roots was opened, and its existence told apart)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.pipeline.svc_util import auth

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from pipeline.service import create_app  # noqa: E402


def _app(tmp_path: Path, catalog: str | None = None):
    crawl = tmp_path / "crawl"
    crawl.mkdir()
    (crawl / "docs-000.jsonl").write_text(
        "".join(json.dumps({"id": i, "text": f"a few plain words, number {i}. " * 12}) + "\n" for i in range(20)))
    app = create_app(tmp_path / "svc", [crawl], catalog=catalog, run_jobs=False)
    toks = {r: app.state.catalog.create_token(r, r)[1] for r in ("read", "submit", "admin")}
    return app, toks, crawl


def _spec(**kw) -> dict:
    return {"input": {"paths": ["docs-000.jsonl"]}, "stages": [], **kw}


def test_nul_characters_are_4xx_on_every_catalog(tmp_path: Path, catalog_url: str | None):
    app, toks, _ = _app(tmp_path, catalog_url)
    with TestClient(app, raise_server_exceptions=False) as c:
        sub = {**auth(toks["submit"]), "content-type": "application/json"}
        for body, field in ((_spec(name="a\x00b"), "name"),
                            (_spec(stages=[{"kind": "dedup.exact", "name": "x\x00"}]), "stages[0].name"),
                            ({"input": {"paths": ["docs-000.jsonl"], "source": "s\x00"}, "stages": []}, "input.source"),
                            ({"input": {"paths": ["docs\x00.jsonl"]}, "stages": []}, "input.paths[0]")):
            r = c.post("/v1/jobs", content=json.dumps(body), headers=sub)
            assert r.status_code == 422, (field, r.status_code, r.text)
            assert r.json()["detail"] == f"spec error: {field}: a NUL character is not allowed"
        r = c.post("/v1/tokens", json={"name": "bot\x00", "role": "read"}, headers=auth(toks["admin"]))
        assert r.status_code == 422 and r.json()["detail"].startswith("body.name:"), r.text
        for url in ("/v1/snapshots?name=%00", "/v1/snapshots?parent=a%00b", "/v1/names?name=%00",
                    "/v1/jobs/0123456789abcdef%00"):
            r = c.get(url, headers=auth(toks["read"]))
            assert r.status_code == 422 and "NUL" in r.json()["detail"], (url, r.status_code, r.text)
        jobs = c.get("/v1/jobs", headers=auth(toks["read"])).json()
        assert jobs["total"] == 0  # nothing was queued
        assert [t["name"] for t in c.get("/v1/tokens", headers=auth(toks["admin"])).json()] == ["read", "submit", "admin"]


def test_output_tokenizer_is_confined_to_the_input_roots(tmp_path: Path):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    app, toks, crawl = _app(tmp_path)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.train_from_iterator(["a few plain words, number one."] * 20, trainers.BpeTrainer(vocab_size=300))
    (crawl / "tok").mkdir()
    tok.save(str(crawl / "tok" / "tokenizer.json"))
    outside = tmp_path / "outside.json"
    outside.write_text("root:x:0:0:root:/root:/bin/bash\n")
    with TestClient(app, raise_server_exceptions=False) as c:
        sub = {**auth(toks["submit"]), "content-type": "application/json"}
        details = []
        for p in (str(outside), str(tmp_path / "no-such.json"), "/etc/passwd", "../outside.json"):
            r = c.post("/v1/jobs", content=json.dumps(_spec(output={"tokenizer": p})), headers=sub)
            assert r.status_code == 422, (p, r.text)
            d = r.json()["detail"]
            assert d.startswith("spec error: output.tokenizer: ") and "not allowed" in d, (p, d)
            details.append(d.replace(repr(p), "<P>"))
        assert len(set(details)) == 1, details  # existing or not, read or not: the same words
        r = c.post("/v1/jobs", content=json.dumps(_spec(output={"tokenizer": "tok"})), headers=sub)
        assert r.status_code == 201, r.text  # one under a root is accepted, as its real path
    spec = json.loads(app.state.catalog.job(r.json()["id"])["spec"])
    assert spec["output"]["tokenizer"] == str((crawl / "tok" / "tokenizer.json").resolve())


def test_a_client_gone_mid_body_leaves_no_traceback_in_the_log(tmp_path: Path):
    """It was 'Exception in ASGI application' + a starlette ClientDisconnect traceback per request."""
    import socket
    import subprocess
    import sys
    import time

    from tests.pipeline.svc_util import REPO, LiveServer, env

    crawl = tmp_path / "crawl"
    crawl.mkdir()
    root = tmp_path / "svc"
    tok = subprocess.run([sys.executable, "-m", "pipeline.cli", "token", "create", "--root", str(root), "--role",
                          "submit", "--name", "t"], capture_output=True, text=True, env=env(), cwd=REPO).stdout.strip()
    srv = LiveServer(root, [crawl]).start()
    try:
        for _ in range(3):
            with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as s:
                s.sendall(b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + tok.encode() +
                          b"\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{\"input\": ")
                time.sleep(0.3)
        time.sleep(0.5)
        import httpx

        assert httpx.get(srv.url + "/health", timeout=5).status_code == 200
    finally:
        srv.stop()
    log = srv.log_text()
    assert "Traceback" not in log and "Exception in ASGI application" not in log, log[-3000:]
