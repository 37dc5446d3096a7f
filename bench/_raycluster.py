"""A real two-node Ray cluster on one machine, for tests and the reliability benchmark.

``ray start --head`` and ``ray start --address=…`` with separate temp dirs, their own CPUs and
custom resources (``assay_head`` / ``assay_worker``), exactly as on two machines; only the IP
is shared. Processes are found (and stopped) by the unique temp dir in their command line, so
nothing else running Ray on this machine is touched (never ``ray stop``, which stops them all).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ray_bin() -> str:
    exe = Path(sys.executable).parent / "ray"
    return str(exe) if exe.exists() else "ray"


class LocalRayCluster:
    def __init__(self, head_cpus: float = 2, worker_cpus: float = 2, env: dict[str, str] | None = None,
                 object_store_mb: int = 200, head_only: bool = False):
        # short path: Ray's Unix sockets live under it (107-byte limit)
        self.root = Path(tempfile.mkdtemp(prefix="arc", dir="/tmp"))
        self.head_dir = self.root / "h"
        self.worker_dir = self.root / "w"
        self.head_cpus, self.worker_cpus = head_cpus, worker_cpus
        self.head_only = head_only  # one node (`ray start --head` alone): the cheapest real cluster
        # token auth as a real cluster runs it (Ray 2.60): one token, given to every node and driver
        import secrets

        self.token_file = self.root / "auth_token"
        self.token_file.write_text(secrets.token_hex(32))
        self.token_file.chmod(0o600)
        self.env = {**os.environ, **(env or {}), "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token",
                    "RAY_AUTH_TOKEN_PATH": str(self.token_file)}
        self.env.pop("RAY_ADDRESS", None)
        self.env.pop("RAY_AUTH_TOKEN", None)
        self.port = _free_port()
        self.object_store = object_store_mb * 1024 * 1024
        self.address = ""
        self._families: dict[str, dict[int, str]] = {}  # node temp dir -> {pid: start time}

    def _start(self, args: list[str]) -> None:
        r = subprocess.run([_ray_bin(), "start", *args, "--disable-usage-stats"], env=self.env,
                           capture_output=True, text=True, timeout=180)
        if r.returncode != 0:
            raise RuntimeError(f"ray start {' '.join(args)} failed:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")

    def start(self) -> LocalRayCluster:
        self._start(["--head", f"--port={self.port}", f"--num-cpus={self.head_cpus}",
                     "--resources", json.dumps({"assay_head": 1}), f"--temp-dir={self.head_dir}",
                     "--include-dashboard=false", f"--object-store-memory={self.object_store}"])
        # Ray records the head's interface address (it rewrites 127.0.0.1, ray #59110)
        self.address = (self.head_dir / "ray_current_cluster").read_text().strip()
        if self.head_only:
            self.wait_nodes(1)
            self.remember(self.head_dir)
            return self
        self._start([f"--address={self.address}", f"--num-cpus={self.worker_cpus}",
                     "--resources", json.dumps({"assay_worker": 1}), f"--temp-dir={self.worker_dir}",
                     f"--object-store-memory={self.object_store}"])
        self.wait_nodes(2)
        self.remember(self.head_dir)
        self.remember(self.worker_dir)
        return self

    def wait_nodes(self, n: int, timeout: float = 60) -> None:
        code = ("import ray,sys; ray.init(address=sys.argv[1], log_to_driver=False); "
                "print(sum(1 for x in ray.nodes() if x['Alive']))")
        deadline = time.time() + timeout
        while time.time() < deadline:
            r = subprocess.run([sys.executable, "-c", code, self.address], env=self.env, capture_output=True,
                               text=True, timeout=120)
            if r.returncode == 0 and r.stdout.strip().splitlines()[-1:] == [str(n)]:
                return
            time.sleep(1)
        raise RuntimeError(f"the cluster did not reach {n} live nodes")

    def pids(self, where: Path | None = None, name: str = "") -> list[int]:
        mark = str(where or self.root)
        out = []
        for d in Path("/proc").iterdir():
            if not d.name.isdigit():
                continue
            try:
                cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if mark in cmd and name in cmd and int(d.name) != os.getpid():
                out.append(int(d.name))
        return out

    @staticmethod
    def with_children(pids: list[int]) -> list[int]:
        """``pids`` and all their descendants (Ray rewrites its workers' and agents' command lines,
        so only their parentage ties them to a node)."""
        parent: dict[int, int] = {}
        for d in Path("/proc").iterdir():
            if d.name.isdigit():
                try:
                    parent[int(d.name)] = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
                except (OSError, ValueError, IndexError):
                    continue
        family, grew = set(pids), True
        while grew:
            more = {c for c, pp in parent.items() if pp in family and c not in family}
            family |= more
            grew = bool(more)
        return sorted(family)

    @staticmethod
    def _started(pid: int) -> str | None:
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
        except (OSError, IndexError):
            return None

    def remember(self, node_dir: Path) -> None:
        """Note a node's processes with their start times: once its raylet is gone, its agents are
        orphans (parent 1) that nothing else ties to the node."""
        fam = self._families.setdefault(str(node_dir), {})
        for p in self.with_children(self.pids(node_dir)):
            st = self._started(p)
            if st is not None:
                fam[p] = st

    def _kill_family(self, node_dir: Path) -> None:
        self.remember(node_dir)
        for p, st in self._families.pop(str(node_dir), {}).items():
            if self._started(p) == st:  # the same process, not a reused pid
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def kill_worker_raylet(self) -> int:
        """SIGKILL the worker node's raylet (its actors and object store die with it)."""
        self.remember(self.worker_dir)
        pids = self.pids(self.worker_dir, "raylet/raylet")
        if not pids:
            raise RuntimeError("no raylet of the worker node found")
        for p in pids:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                raise RuntimeError("the worker node's raylet exited before the kill") from None
        return pids[0]

    def worker_processes(self) -> list[tuple[int, str]]:
        """(pid, title) of Ray's worker processes on both nodes (the raylets' ``ray::`` children;
        Ray rewrites their command line to the task or actor they run, e.g. ``ray::_MapWorker``)."""
        raylets = set(self.pids(self.root, "raylet/raylet"))
        out = []
        for d in Path("/proc").iterdir():
            if not d.name.isdigit():
                continue
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
                title = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            except (OSError, ValueError, IndexError):
                continue
            if ppid in raylets and title.startswith("ray::"):
                out.append((int(d.name), title))
        return out

    def kill_worker_process(self, rng: random.Random, return_pid: bool = False) -> str | tuple[str, int]:
        """SIGKILL one Ray worker process (a busy one if any: an actor or task at work)."""
        procs = self.worker_processes()
        # not the node's agents (ray::DashboardAgent, ray::RuntimeEnvAgent): they are daemons of
        # the node, not worker processes, and a raylet shuts itself down when one dies (killing
        # one is a raylet kill in disguise, and on the head node the end of the cluster)
        procs = [p for p in procs if not p[1].split()[0].endswith("Agent")]
        busy = [p for p in procs if "IDLE" not in p[1]]
        # the pipeline's own work first: shard actors (Ray Data's map workers) and reduce tasks
        ours = [p for p in busy if any(k in p[1] for k in ("MapWorker", "_RayShardActor", "_run_reduce_task"))]
        if not (busy or procs):
            raise RuntimeError("no Ray worker process found")
        pid, title = rng.choice(ours or busy or procs)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:  # it exited between the listing and the kill
            raise RuntimeError(f"{title.split()[0]} exited before the kill") from None
        return (title.split()[0], pid) if return_pid else title.split()[0]

    def worker_node_diagnosis(self) -> str:
        """Why the worker node has no raylet, from its own logs (the last lines that say)."""
        logs = sorted(self.worker_dir.glob("session_*/logs/raylet.out"))
        if not logs:
            return f"no raylet log under {self.worker_dir}"
        lines = [ln for ln in logs[-1].read_text(errors="replace").splitlines()
                 if any(k in ln for k in ("dead", "Dead", "exit", "Exit", "FATAL", "Check failed", "SIGTERM"))]
        return " | ".join(ln[-240:] for ln in lines[-3:]) or "the raylet log says nothing about an exit"

    def restart_worker_node(self) -> None:
        """After a raylet kill: clear what is left of the worker node, start a fresh one (new temp dir)."""
        self._kill_family(self.worker_dir)
        self.worker_dir = self.root / f"w{len(list(self.root.glob('w*')))}"
        self._start([f"--address={self.address}", f"--num-cpus={self.worker_cpus}",
                     "--resources", json.dumps({"assay_worker": 1}), f"--temp-dir={self.worker_dir}",
                     f"--object-store-memory={self.object_store}"])
        self.wait_nodes(2, timeout=180)  # the killed node counts as alive until Ray's health check fails it
        self.remember(self.worker_dir)

    def stop(self) -> None:
        for node in list(self._families):
            self._kill_family(Path(node))
        for _ in range(5):
            pids = self.with_children(self.pids())
            if not pids:
                break
            for p in pids:
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.5)
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> LocalRayCluster:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()
