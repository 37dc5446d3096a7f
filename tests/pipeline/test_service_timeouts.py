"""Slow clients against a live `assay serve` (real sockets on 127.0.0.1): a connection that sends
nothing, trickles its head, or trickles its body is closed at the bound (`--header-timeout`,
`--body-timeout`); a prompt client on the same server is unaffected (pipeline/service/timeouts.py)."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import httpx
import pytest

from pipeline.service.catalog import Catalog, catalog_url
from tests.pipeline.svc_util import LiveServer

BOUND = 0.5  # both timeouts, seconds


@pytest.fixture()
def server(tmp_path: Path):
    root = tmp_path / "svc"
    root.mkdir()
    _, tok = Catalog(catalog_url(root)).create_token("slow", "submit")
    srv = LiveServer(root, [tmp_path], extra=["--header-timeout", str(BOUND), "--body-timeout", str(BOUND)]).start()
    try:
        yield srv, tok
    finally:
        srv.stop()


def _closed_after(port: int, first: bytes, trickle: bytes, out: dict, key: str) -> None:
    """Send ``first``, then ``trickle`` every 0.2 s until the server closes; record when and what it said."""
    t0 = time.perf_counter()
    got = b""
    with socket.create_connection(("127.0.0.1", port), timeout=4 * BOUND) as s:
        s.settimeout(0.2)
        if first:
            s.sendall(first)
        while time.perf_counter() - t0 < 4 * BOUND:
            try:
                chunk = s.recv(4096)
            except TimeoutError:
                if trickle:
                    try:
                        s.sendall(trickle)
                    except OSError:
                        break
                continue
            except OSError:
                break
            if not chunk:
                break
            got += chunk
        out[key] = (time.perf_counter() - t0, got)


def test_slow_clients_are_cut_off_at_the_bound_and_prompt_ones_are_not(server):
    srv, tok = server
    body_head = (f"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {tok}\r\n"
                 "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{").encode()
    cases = {
        "silent": (b"", b""),  # connects, never sends a byte
        "head": (b"GET /health HTTP/1.1\r\nHost: x\r\n", b"X-Slow: 1\r\n"),  # a header line every 0.2 s
        "body": (body_head, b" "),  # a whole head, then one body byte every 0.2 s
    }
    out: dict = {}
    threads = [threading.Thread(target=_closed_after, args=(srv.port, a, b, out, k)) for k, (a, b) in cases.items()]
    for t in threads:
        t.start()
    with httpx.Client(base_url=srv.url, timeout=2) as c:  # meanwhile, prompt requests on one kept-alive connection
        while any(t.is_alive() for t in threads):
            assert c.get("/health").status_code == 200
            time.sleep(0.1)
    for t in threads:
        t.join()
    for k, (took, said) in out.items():
        assert BOUND * 0.9 < took < BOUND + 1.5, f"{k}: closed after {took:.2f}s (bound {BOUND}s)"
    assert out["silent"][1] == b""  # nothing was asked: nothing is answered
    assert out["head"][1].startswith(b"HTTP/1.1 408") and b"request head did not arrive" in out["head"][1]
    assert out["body"][1].startswith(b"HTTP/1.1 408") and b"request body did not arrive" in out["body"][1]
    r = httpx.post(srv.url + "/v1/jobs", content=b"{", headers={"Authorization": f"Bearer {tok}",
                                                                  "content-type": "application/json"})
    assert r.status_code == 422  # a prompt body still reaches the app (and is judged on its content)
    log = srv.log_text()
    assert "request body did not arrive within 0.5 s" in log and "Traceback" not in log
