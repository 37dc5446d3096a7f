"""Against a live `assay serve` (uvicorn, real sockets): a 50 MB body never stalls /health, and
schemathesis fuzzes the server's own OpenAPI (bounded): 0 server errors, 0 schema violations."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.pipeline.svc_util import LiveServer, auth, cli, wait_job, write_inputs


@pytest.fixture()
def live(tmp_path: Path, raw_docs):
    crawl = write_inputs(tmp_path / "crawl", raw_docs[:60], per_file=50)
    root = tmp_path / "svc"
    tok = cli("token", "create", "--root", str(root), "--role", "admin", "--name", "fuzz").stdout.strip()
    srv = LiveServer(root, [crawl]).start()
    try:
        yield srv, tok
    finally:
        srv.stop()


def test_a_50mb_body_is_cut_off_and_health_keeps_answering(live):
    srv, tok = live
    h = {**auth(tok), "content-type": "application/json"}
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:  # a declared 50 MB: refused unread
        s.sendall((f"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {tok}\r\n"
                   f"Content-Type: application/json\r\nContent-Length: {50 * 1024 * 1024}\r\n\r\n").encode() + b"{" * 1000)
        assert s.recv(100).startswith(b"HTTP/1.1 413")

    result: dict = {}

    def upload() -> None:
        def chunks():  # chunked transfer, no Content-Length: the server must count
            block = b" " * (1 << 20)
            for _ in range(50):
                yield block
                time.sleep(0.02)

        try:
            result["r"] = httpx.post(srv.url + "/v1/jobs", content=chunks(), headers=h, timeout=60)
        except httpx.HTTPError as e:  # the server may close the connection after its 413
            result["error"] = e

    t = threading.Thread(target=upload)
    t.start()
    worst = 0.0
    while t.is_alive():
        t0 = time.perf_counter()
        assert httpx.get(srv.url + "/health", timeout=5).status_code == 200
        worst = max(worst, time.perf_counter() - t0)
        time.sleep(0.05)
    t.join()
    assert worst < 1.0, f"/health took {worst:.2f}s during the upload"
    if "r" in result:
        assert result["r"].status_code == 413
    assert httpx.get(srv.url + "/v1/jobs", headers=auth(tok)).json()["total"] == 0
    log = (srv.root.parent / f"server-{srv.port}.log").read_text()
    assert "GET /health" in log and tok not in log  # requests are logged, tokens never


@pytest.mark.slow
def test_schemathesis_finds_no_server_errors_or_schema_violations(live, tmp_path: Path):
    srv, tok = live
    # one real job and snapshot, so the snapshot and job routes have something to answer with
    r = httpx.post(srv.url + "/v1/jobs", json={"name": "fuzz", "input": {"paths": ["docs-000.jsonl"]},
                                               "stages": [{"kind": "dedup.exact"}]}, headers=auth(tok))
    assert wait_job(lambda p, headers: httpx.get(srv.url + p, headers=headers), r.json()["id"], auth(tok))["status"] == "succeeded"
    assert httpx.get(srv.url + "/openapi.json").status_code == 401  # the schema needs a token too
    schema = tmp_path / "openapi.json"
    schema.write_text(httpx.get(srv.url + "/openapi.json", headers=auth(tok)).text)
    exe = shutil.which("schemathesis", path=str(Path(sys.executable).parent)) or "schemathesis"
    checks = ("not_a_server_error,status_code_conformance,content_type_conformance,"
              "response_schema_conformance,response_headers_conformance")
    out = subprocess.run(
        [exe, "run", str(schema), "--url", srv.url, "-H", f"Authorization: Bearer {tok}", "--checks", checks,
         "-n", "12", "--seed", "8", "--workers", "1", "--phases", "examples,coverage,fuzzing",
         "--suppress-health-check", "all", "--request-timeout", "30"],
        capture_output=True, text=True, timeout=400, cwd=tmp_path)
    tail = out.stdout[-4000:]
    assert out.returncode == 0, tail
    assert "generated" in tail and "failures" not in tail.split("SUMMARY")[-1].lower().replace("0 failures", ""), tail
