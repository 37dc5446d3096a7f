"""A GCS API on loopback for tests: gcp-storage-emulator (PyPI), in its own venv (``make venv-gcs``).

The pipeline reaches it with pyarrow's native GCS client, configured only by the standard
``STORAGE_EMULATOR_HOST`` variable (what Google's client libraries read for an emulator).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.s3server import free_port, loopback_server, venv_bin



def emulator_bin() -> Path | None:
    return venv_bin("ASSAY_GCS_EMULATOR", ".venv-gcs", "gcp-storage-emulator")


@contextmanager
def gcs_emulator(bucket: str = "assay") -> Iterator[dict[str, str]]:
    """Start the emulator (in memory) on a free loopback port with ``bucket``; yield the env a client needs."""
    exe = emulator_bin()
    if exe is None:
        pytest.fail("gcp-storage-emulator not found: run `make venv-gcs` (creates .venv-gcs)")
    port = free_port()
    cmd = [str(exe), "start", "--host", "127.0.0.1", "--port", str(port), "--default-bucket", bucket,
           "--in-memory", "--quiet"]
    with loopback_server(cmd, port, "gcp-storage-emulator"):
        yield {"STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{port}"}
