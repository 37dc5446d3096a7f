"""An S3 API on loopback for tests: moto's standalone server (``moto[server]``), in its own venv.

moto and s3fs pull botocore, which pins ``python-dateutil<3`` (the project venv has 4.0), so the
server runs from ``.venv-moto`` beside the project venv (``make venv-moto``); the pipeline talks
to it with pyarrow's native S3 client, configured only by the standard AWS variables.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def venv_bin(env_var: str, venv: str, name: str) -> Path | None:
    """``$env_var``, else ``name`` in the sibling venv ``venv`` of this interpreter's, else of the repo."""
    cands = [os.environ.get(env_var, ""),
             str(Path(sys.executable).resolve().parent.parent.with_name(venv) / "bin" / name),
             str(Path(sys.executable).parent.parent.with_name(venv) / "bin" / name),
             str(REPO / venv / "bin" / name)]
    for c in cands:
        if c and Path(c).is_file():
            return Path(c)
    return None


def moto_server_bin() -> Path | None:
    return venv_bin("ASSAY_MOTO_SERVER", ".venv-moto", "moto_server")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1",
          "AWS_EC2_METADATA_DISABLED": "true"}


@contextmanager
def loopback_server(cmd: list[str], port: int, what: str) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``cmd`` until the block ends; enter once it accepts connections on 127.0.0.1:``port``."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"{what} did not start") from None
                time.sleep(0.1)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


@contextmanager
def moto_s3(bucket: str = "assay") -> Iterator[dict[str, str]]:
    """Start moto on a free loopback port; yield the environment a client needs (endpoint included)."""
    exe = moto_server_bin()
    if exe is None:
        pytest.fail("moto_server not found: run `make venv-moto` (creates .venv-moto with moto[server])")
    port = free_port()
    with loopback_server([str(exe), "-H", "127.0.0.1", "-p", str(port)], port, "moto_server"):
        env = {**S3_ENV, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}
        import pyarrow.fs as pafs

        fs = pafs.S3FileSystem(access_key="testing", secret_key="testing", region="us-east-1", scheme="http",
                               endpoint_override=f"127.0.0.1:{port}", allow_bucket_creation=True)
        fs.create_dir(bucket)
        yield env
