"""`assay serve --tls-cert/--tls-key`: a live server with a self-signed certificate (made here
with the `openssl` CLI) answers over HTTPS for a client that trusts that certificate, refuses
clients that don't, refuses plain HTTP on the same port, and does not print the no-TLS warning
even off loopback (the warning without TLS is tested in test_service.py)."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.pipeline.svc_util import LiveServer, auth, cli


def _self_signed(folder: Path) -> tuple[Path, Path]:
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("the openssl CLI is missing (apt-get install openssl; .ci/apt-packages.txt)")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=assay-test",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   check=True, capture_output=True, timeout=60)
    return cert, key


def test_serve_over_tls(tmp_path: Path):
    cert, key = _self_signed(tmp_path)
    ca = ssl.create_default_context(cafile=str(cert))
    root = tmp_path / "svc"
    tok = cli("token", "create", "--root", str(root), "--role", "read", "--name", "tls").stdout.strip()
    # off loopback (all interfaces) and with TLS: the clear-text warning must not appear
    srv = LiveServer(root, [], https=True, verify=ca,
                     extra=["--host", "0.0.0.0", "--tls-cert", str(cert), "--tls-key", str(key)]).start()
    try:
        assert srv.url.startswith("https://127.0.0.1:")
        r = httpx.get(srv.url + "/health", verify=ca, timeout=10)
        assert r.status_code == 200
        assert httpx.get(srv.url + "/v1/jobs", headers=auth(tok), verify=ca, timeout=10).status_code == 200
        assert httpx.get(srv.url + "/v1/jobs", verify=ca, timeout=10).status_code == 401

        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):  # a client without that CA
            httpx.get(srv.url + "/health", timeout=10)
        with pytest.raises(httpx.HTTPError):  # plain HTTP to the TLS port gets no answer
            httpx.get(f"http://127.0.0.1:{srv.port}/health", timeout=10)
        assert httpx.get(srv.url + "/health", verify=ca, timeout=10).status_code == 200  # still serving

        log = srv.log_text()
        assert "https://" in log and "Uvicorn running" in log, log[-2000:]
        assert "without TLS" not in log and "warning" not in log.lower(), log[-2000:]
        assert tok not in log
    finally:
        srv.stop()


@pytest.mark.parametrize("half", ["--tls-key", "--tls-cert"])
def test_half_a_tls_configuration_is_refused(tmp_path: Path, half: str):
    """A key without its certificate (or the reverse) is a one-line usage error naming both
    options (uvicorn alone dies with a bare AssertionError / SSL traceback)."""
    cert, key = _self_signed(tmp_path)
    r = cli("serve", "--root", str(tmp_path / "svc"), "--port", "1", half, str(key if half == "--tls-key" else cert),
            check=False)
    assert r.returncode == 2
    assert "--tls-cert" in r.stderr and "--tls-key" in r.stderr and "Traceback" not in r.stderr
