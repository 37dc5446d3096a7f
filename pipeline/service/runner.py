"""The job runner: a supervised worker process per job, a queue in the catalog, bounded concurrency.

A thread in the API process (never the event loop) polls the catalog:

- starts queued jobs, oldest first, while fewer than ``max_jobs`` run and no running job
  shares the job's work folder (same spec and inputs: they would write the same markers);
- reaps workers: a worker that exits without reporting (killed, crashed) makes its job
  ``failed`` with the exit status and its last log line — never a ghost ``running``;
- cancels: ``SIGTERM`` to the worker's process group, ``SIGKILL`` after ``grace_s``; the job
  becomes ``cancelled`` and its partial output stays, so resubmitting the spec resumes it;
- on start (:meth:`recover`), jobs left ``running`` by a server that died are put back in the
  queue (their old workers, if any survived, are killed first): they resume from their
  completion markers and finish with the same snapshot;
- cleans, by policy, the work folders of failed and cancelled jobs older than ``keep_failed_s``
  that no queued or running job needs.

Workers get ``PR_SET_PDEATHSIG`` so they die with the supervisor even on ``SIGKILL``.
"""

from __future__ import annotations

import ctypes
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from pipeline.service.catalog import Catalog, jobs

log = logging.getLogger("assay.service")
PROJECT_ROOT = str(Path(__file__).resolve().parents[2])


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _is_our_worker(pid: int, job_id: str) -> bool:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"pipeline.service.worker" in cmd and job_id.encode() in cmd


class Supervisor:
    def __init__(self, catalog: Catalog, catalog_url: str, root: Path, input_roots: list[str],
                 max_jobs: int = 2, ray: str | None = None, keep_failed_s: float = 24 * 3600,
                 poll_s: float = 0.25, grace_s: float = 3.0):
        self.catalog = catalog
        self.catalog_url = catalog_url
        self.root = root
        self.input_roots = input_roots
        self.max_jobs = max_jobs
        self.ray = ray
        self.keep_failed_s = keep_failed_s
        self.poll_s = poll_s
        self.grace_s = grace_s
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.cancel_sent: dict[str, float] = {}
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_clean = 0.0

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self.recover()
        self._thread = threading.Thread(target=self._loop, name="assay-supervisor", daemon=True)
        self._thread.start()

    def stop(self, requeue: bool = True) -> None:
        """Stop supervising; running workers are killed and their jobs go back to the queue."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(10)
        for jid, p in list(self.procs.items()):
            self._kill(p, signal.SIGKILL)
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                pass
            if requeue:
                self.catalog.update_job(jid, jobs.c.status == "running", status="queued", pid=None)
                self.catalog.add_event(jid, "state", {"status": "queued", "reason": "server stopped; resumes on restart"})
        self.procs.clear()

    def wake(self) -> None:
        self._wake.set()

    def recover(self) -> None:
        for j in self.catalog.jobs_where(jobs.c.status == "running"):
            pid = j.get("pid")
            if pid and _is_our_worker(int(pid), j["id"]):
                try:
                    os.killpg(int(pid), signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            if j.get("cancel_requested"):
                self.catalog.update_job(j["id"], status="cancelled", pid=None, finished_at=time.time())
                continue
            self.catalog.update_job(j["id"], jobs.c.status == "running", status="queued", pid=None)
            self.catalog.add_event(j["id"], "state", {"status": "queued",
                                                      "reason": "the server restarted; the job resumes from its markers"})

    # -- the loop ----------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:  # noqa: BLE001 - the supervisor must outlive a bad tick
                log.exception("supervisor tick failed")
            self._wake.wait(self.poll_s)
            self._wake.clear()

    def tick(self) -> None:
        self._reap_and_cancel()
        self._start_queued()
        if time.time() - self._last_clean > 30:
            self._last_clean = time.time()
            self.clean()

    def _kill(self, p: subprocess.Popen[bytes], sig: int) -> None:
        try:
            os.killpg(p.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def _reap_and_cancel(self) -> None:
        for jid, p in list(self.procs.items()):
            rc = p.poll()
            if rc is None:
                j = self.catalog.job(jid)
                if j and j["cancel_requested"]:
                    sent = self.cancel_sent.get(jid)
                    if sent is None:
                        self.cancel_sent[jid] = time.time()
                        self._kill(p, signal.SIGTERM)
                    elif time.time() - sent > self.grace_s:
                        self._kill(p, signal.SIGKILL)
                continue
            self._kill(p, signal.SIGKILL)  # stray pool children of the worker's group
            del self.procs[jid]
            self.cancel_sent.pop(jid, None)
            j = self.catalog.job(jid)
            if j is None:
                continue
            if j["cancel_requested"] and j["status"] == "running":
                self.catalog.update_job(jid, jobs.c.status == "running", status="cancelled", finished_at=time.time(), pid=None)
                self.catalog.add_event(jid, "state", {"status": "cancelled"})
            elif j["status"] == "running":
                how = f"was killed by signal {-rc}" if rc < 0 else f"exited with status {rc}"
                last = [e["data"].get("line", "") for e in self.catalog.events(jid, kind="log", limit=100000)[-1:]]
                err = f"worker {how} without finishing" + (f"; last log line: {last[0]}" if last and last[0] else "")
                self.catalog.update_job(jid, jobs.c.status == "running", status="failed", error=err[:2000],
                                        finished_at=time.time(), pid=None)
                self.catalog.add_event(jid, "state", {"status": "failed", "error": err[:2000]})

    def _start_queued(self) -> None:
        if len(self.procs) >= self.max_jobs:
            return
        busy = set()
        for jid in self.procs:
            j = self.catalog.job(jid)
            if j:
                busy.add(j["work_key"])
        for j in self.catalog.jobs_where(jobs.c.status == "queued"):
            if len(self.procs) >= self.max_jobs:
                return
            if j["work_key"] in busy or j["cancel_requested"]:
                continue
            if not self.catalog.update_job(j["id"], jobs.c.status == "queued", status="running",
                                           started_at=j.get("started_at") or time.time(), attempts=(j["attempts"] or 0) + 1,
                                           heartbeat_at=time.time()):
                continue  # cancelled meanwhile
            self._spawn(j)
            busy.add(j["work_key"])

    def _spawn(self, j: dict[str, Any]) -> None:
        logs = self.root / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pipeline.service.worker", "--catalog", self.catalog_url, "--root", str(self.root)]
        for r in self.input_roots:
            cmd += ["--input-root", str(r)]
        if self.ray:
            cmd += ["--ray", self.ray]
        cmd.append(j["id"])
        env = dict(os.environ)
        env["PYTHONPATH"] = PROJECT_ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        cwd = self.root / "work" / "_cwd"  # empty: a relative path that slipped through finds nothing
        cwd.mkdir(parents=True, exist_ok=True)
        with open(logs / f"{j['id']}.log", "ab") as fh:
            p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT, env=env,
                                 start_new_session=True, preexec_fn=_die_with_parent, cwd=str(cwd))
        self.procs[j["id"]] = p
        self.catalog.update_job(j["id"], pid=p.pid)
        self.catalog.add_event(j["id"], "state", {"status": "running", "attempt": (j["attempts"] or 0) + 1})

    # -- cleanup policy ----------------------------------------------------------------------

    def clean(self) -> int:
        """Remove work folders of failed/cancelled jobs older than ``keep_failed_s`` that no queued
        or running job (nor a newer job with the same spec) still needs. Returns folders removed."""
        now = time.time()
        live = {j["work_key"] for j in self.catalog.jobs_where(jobs.c.status.in_(("queued", "running")))}
        n = 0
        for j in self.catalog.jobs_where(jobs.c.status.in_(("failed", "cancelled")), jobs.c.cleaned == 0):
            if j["work_key"] in live or now - (j["finished_at"] or now) < self.keep_failed_s:
                continue
            folder = self.root / "work" / j["work_key"]
            if folder.exists():
                shutil.rmtree(folder, ignore_errors=True)
                n += 1
            self.catalog.update_job(j["id"], cleaned=1)
        return n
