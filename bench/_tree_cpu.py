"""CPU-seconds of a whole process tree: run a function in a fresh Python process, count every
process it starts.

``RUSAGE_CHILDREN`` counts only descendants that were *waited for*, up the chain. Pipeline
workers are forkserver children: the forkserver is orphaned when its parent exits, so its CPU
and its workers' are lost to whoever measures. Here the measuring process makes itself a child
subreaper (``prctl(PR_SET_CHILD_SUBREAPER)``, Linux): orphaned descendants are re-parented to
it, it waits for every one of them after the runner exits, and then ``RUSAGE_CHILDREN`` holds
the CPU of the runner, its forkserver, the workers and any helper they started (datatrove's
``multiprocess.Manager``, the resource tracker). Python start-up and imports are inside, on
every side alike.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PR_SET_CHILD_SUBREAPER = 36
REPO = Path(__file__).resolve().parents[1]


def _become_subreaper() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _children() -> set[int]:
    """PIDs whose parent is this process (from /proc: no dependency)."""
    me, out = os.getpid(), set()
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat", "rb") as fh:
                    stat = fh.read()
            except OSError:
                continue
            if int(stat[stat.rindex(b")") + 2:].split()[1]) == me:
                out.add(int(d))
    return out


def _reap_new(before: set[int], deadline_s: float = 60.0) -> int:
    """Wait for every child of ours that was not there ``before`` (the runner's orphans land
    here when it exits); children that predate the run (a test's server) are left alone."""
    n, end = 0, time.monotonic() + deadline_s
    while True:
        new = _children() - before
        if not new:
            return n
        for pid in new:
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                continue
            n += done != 0
        if time.monotonic() > end:
            raise RuntimeError(f"descendants {sorted(new)} of the measured run did not exit within "
                               f"{deadline_s:.0f} s; their CPU would be lost")
        time.sleep(0.02)


def run_measured(func: str, kwargs: dict[str, Any], env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``module:function(**kwargs)`` in a fresh interpreter; returns its (JSON) result with
    ``tree_cpu_s`` (CPU of the whole process tree) and ``process_wall_s`` (start to last exit)."""
    if not _become_subreaper():
        raise RuntimeError("process-tree CPU accounting needs Linux prctl(PR_SET_CHILD_SUBREAPER)")
    before = _children()
    mod, fn = func.split(":")
    with tempfile.TemporaryDirectory(prefix="assay-tree-cpu-") as d:
        res_path = Path(d) / "result.json"
        code = ("import json, sys; from importlib import import_module; "
                f"r = getattr(import_module({mod!r}), {fn!r})(**json.loads(sys.argv[1])); "
                "open(sys.argv[2], 'w').write(json.dumps(r))")
        e = dict(os.environ if env is None else env)
        e["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [e.get("PYTHONPATH")])])
        k0, t0 = _children_cpu(), time.perf_counter()
        p = subprocess.run([sys.executable, "-c", code, json.dumps(kwargs), str(res_path)], env=e, cwd=REPO)
        reaped = _reap_new(before)
        wall = time.perf_counter() - t0
        cpu = _children_cpu() - k0
        if p.returncode != 0:
            raise RuntimeError(f"{func} exited {p.returncode}")
        out = json.loads(res_path.read_text())
    out.update({"tree_cpu_s": cpu, "process_wall_s": wall, "orphans_reaped": reaped})
    return out


def run_cmd_measured(cmd: list[str], env: dict[str, str] | None = None, cwd: Path = REPO) -> dict[str, Any]:
    """Run a whole command; ``cpu_s`` covers it and every process it started, ``wall_s`` is
    spawn to the last descendant's exit."""
    if not _become_subreaper():
        raise RuntimeError("process-tree CPU accounting needs Linux prctl(PR_SET_CHILD_SUBREAPER)")
    before = _children()
    k0, t0 = _children_cpu(), time.perf_counter()
    p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    reaped = _reap_new(before)
    wall = time.perf_counter() - t0
    if p.returncode:
        raise RuntimeError(f"{cmd[:4]} exited {p.returncode}: {p.stderr[-2000:]}")
    return {"wall_s": wall, "cpu_s": _children_cpu() - k0, "orphans_reaped": reaped,
            "stdout": p.stdout, "stderr": p.stderr[-2000:]}


def _burn(workers: int, cpu_s: float) -> dict[str, Any]:
    """Test helper: ``workers`` forkserver children each spend ``cpu_s`` CPU-seconds."""
    from multiprocessing import get_context

    with get_context("forkserver").Pool(workers) as pool:
        spent = pool.map(_spin, [cpu_s] * workers)
    return {"spent": spent}


def _spin(cpu_s: float) -> float:
    t0 = time.process_time()
    x = 0
    while time.process_time() - t0 < cpu_s:
        x += 1
    return time.process_time() - t0
