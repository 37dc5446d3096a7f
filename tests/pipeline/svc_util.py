"""Helpers for the service tests: real inputs, tokens, a live uvicorn server, a private PostgreSQL."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[2]
FINAL = ("succeeded", "failed", "cancelled")


def write_inputs(folder: Path, docs: list[dict], files: int = 1, per_file: int = 150, dup: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    k = 0
    for f in range(files):
        with open(folder / f"docs-{f:03d}.jsonl", "w") as fh:
            for _ in range(per_file):
                d = docs[k % len(docs)]
                fh.write(json.dumps({"id": k, "text": d["text"]}) + "\n")
                k += 1
            if dup and f == 0:
                fh.write(json.dumps({"id": "dup", "text": docs[0]["text"]}) + "\n")
    return folder


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def wait_job(get: Any, job_id: str, headers: dict[str, str], timeout: float = 120, until: tuple[str, ...] = FINAL) -> dict:
    t0 = time.time()
    while time.time() - t0 < timeout:
        j = get(f"/v1/jobs/{job_id}", headers=headers).json()
        if j["status"] in until:
            return j
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} still {j['status']} after {timeout}s")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(REPO) + (os.pathsep + e["PYTHONPATH"] if e.get("PYTHONPATH") else "")
    return e


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], capture_output=True, text=True, env=env(),
                          check=check, timeout=120)


class LiveServer:
    """`assay serve` in a subprocess (its own process group), on a free loopback port."""

    def __init__(self, root: Path, input_roots: list[Path], catalog: str | None = None, max_jobs: int = 2,
                 extra: list[str] | None = None, env: dict[str, str] | None = None, https: bool = False,
                 verify: Any = True):
        """``env``: the server's (and so its workers') environment instead of :func:`env`;
        ``https``: it serves TLS (``extra`` names the cert), checked against ``verify`` (a CA file)."""
        self.root, self.input_roots, self.catalog, self.max_jobs = root, input_roots, catalog, max_jobs
        self.extra = extra or []
        self.env = env
        self.https, self.verify = https, verify
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.https else 'http'}://127.0.0.1:{self.port}"

    def log_text(self) -> str:
        return (self.root.parent / f"server-{self.port}.log").read_text(errors="replace")

    def start(self, timeout: float = 60) -> LiveServer:
        cmd = [sys.executable, "-m", "pipeline.cli", "serve", "--root", str(self.root), "--port", str(self.port),
               "--max-jobs", str(self.max_jobs), *self.extra]
        for r in self.input_roots:
            cmd += ["--input-root", str(r)]
        if self.catalog:
            cmd += ["--catalog", self.catalog]
        self.log = open(self.root.parent / f"server-{self.port}.log", "ab")
        self.proc = subprocess.Popen(cmd, env=self.env or env(), stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        t0 = time.time()
        while time.time() - t0 < timeout:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited: {(self.root.parent / f'server-{self.port}.log').read_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/health", timeout=1, verify=self.verify).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError("server did not start")

    def kill(self) -> None:
        """SIGKILL the server process only (not its group): its workers must die on their own."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.proc = None


def pg_bin() -> Path | None:
    base = Path("/usr/lib/postgresql")
    if not base.is_dir():
        return None
    versions = sorted(base.iterdir(), reverse=True)
    for v in versions:
        if (v / "bin" / "initdb").exists():
            return v / "bin"
    return None


@contextmanager
def private_postgres() -> Iterator[str]:
    """A throwaway PostgreSQL cluster on a free port (Debian's `postgresql`); yields its URL.

    initdb refuses to run as root, so as root the cluster belongs to the `postgres` user."""
    binp = pg_bin()
    if binp is None:
        raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql; .ci/apt-packages.txt)")
    tmp = Path(tempfile.mkdtemp(prefix="assay-pg-"))
    data = tmp / "data"
    port = free_port()
    as_root = os.geteuid() == 0
    user = "postgres" if as_root else None

    def run(*cmd: str) -> None:
        full = list(cmd)
        if as_root:
            full = ["runuser", "-u", "postgres", "--", *full]
        subprocess.run(full, check=True, capture_output=True, timeout=120)

    if as_root:
        shutil.chown(tmp, "postgres")
    try:
        run(str(binp / "initdb"), "-D", str(data), "-A", "trust", "-U", "assay", "--no-sync", "-E", "UTF8")
        run(str(binp / "pg_ctl"), "-D", str(data), "-l", str(tmp / "log"), "-w", "-t", "60", "-o",
            f"-p {port} -k {tmp} -c listen_addresses=127.0.0.1 -c fsync=off", "start")
        run(str(binp / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "assay", "assay")
        yield f"postgresql://assay@127.0.0.1:{port}/assay"
    finally:
        try:
            run(str(binp / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "-t", "30", "stop")
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
            pass
        shutil.rmtree(tmp, ignore_errors=True)
        _ = user
