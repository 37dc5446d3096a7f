"""A GCS API on loopback for tests: gcp-storage-emulator (PyPI), in its own venv (``make venv-gcs``).

The pipeline reaches it with pyarrow's native GCS client, configured only by the standard
``STORAGE_EMULATOR_HOST`` variable (what Google's client libraries read for an emulator).
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

from tests.s3server import free_port

REPO = Path(__file__).resolve().parents[1]


def emulator_bin() -> Path | None:
    cands = [os.environ.get("ASSAY_GCS_EMULATOR", ""),
             str(Path(sys.executable).resolve().parent.parent.with_name(".venv-gcs") / "bin" / "gcp-storage-emulator"),
             str(Path(sys.executable).parent.parent.with_name(".venv-gcs") / "bin" / "gcp-storage-emulator"),
             str(REPO / ".venv-gcs" / "bin" / "gcp-storage-emulator")]
    for c in cands:
        if c and Path(c).is_file():
            return Path(c)
    return None


@contextmanager
def gcs_emulator(bucket: str = "assay") -> Iterator[dict[str, str]]:
    """Start the emulator (in memory) on a free loopback port with ``bucket``; yield the env a client needs."""
    exe = emulator_bin()
    if exe is None:
        pytest.fail("gcp-storage-emulator not found: run `make venv-gcs` (creates .venv-gcs)")
    port = free_port()
    proc = subprocess.Popen([str(exe), "start", "--host", "127.0.0.1", "--port", str(port), "--default-bucket", bucket,
                             "--in-memory", "--quiet"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError("gcp-storage-emulator did not start") from None
                time.sleep(0.1)
        yield {"STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{port}"}
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
