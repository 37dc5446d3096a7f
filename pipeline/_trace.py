"""A per-process timeline of a run, for finding serial gaps (``ASSAY_TRACE=FOLDER``).

When the variable is set, the driver, the pool's fork server and every pool worker append one
JSON line per span — ``{"pid", "role", "what", "t0", "t1", "cpu_s", "wait_s"}`` (wall clock
from ``time.time()``, shared by the processes of one machine; ``cpu_s`` the process's CPU in
the span; ``wait_s`` the time it was runnable but waiting for a CPU, from Linux's
``/proc/self/schedstat``, so on a shared machine ``t1 - t0 - cpu_s - wait_s`` is the time the
span was blocked — I/O, or waiting for another process — load aside) — to
``FOLDER/<pid>.jsonl``. ``bench scale --timeline`` reads them to show when each
worker was busy and when it waited. Unset (the default), a span costs one dict lookup.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ENV = "ASSAY_TRACE"


def enabled() -> bool:
    return bool(os.environ.get(ENV))


def run_queue_wait() -> float:
    """Seconds this process's main thread has waited for a CPU while runnable (0 if unknown)."""
    try:
        return int(Path("/proc/self/schedstat").read_text().split()[1]) / 1e9
    except (OSError, ValueError, IndexError):
        return 0.0


def record(role: str, what: str, t0: float, t1: float, cpu_s: float, wait_s: float = 0.0) -> None:
    folder = os.environ.get(ENV)
    if not folder:
        return
    line = json.dumps({"pid": os.getpid(), "role": role, "what": what, "t0": t0, "t1": t1, "cpu_s": cpu_s,
                       "wait_s": wait_s})
    with open(Path(folder) / f"{os.getpid()}.jsonl", "a") as fh:
        fh.write(line + "\n")


@contextmanager
def span(role: str, what: str) -> Iterator[None]:
    if not os.environ.get(ENV):
        yield
        return
    t0, c0, w0 = time.time(), time.process_time(), run_queue_wait()
    try:
        yield
    finally:
        record(role, what, t0, time.time(), time.process_time() - c0, run_queue_wait() - w0)


def process_start_time() -> float:
    """This process's start (wall clock), from /proc (Linux, 10 ms ticks); now where unknown."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        age = time.clock_gettime(time.CLOCK_BOOTTIME) - ticks / os.sysconf("SC_CLK_TCK")
        return time.time() - age
    except (OSError, ValueError, IndexError, AttributeError):
        return time.time()


def load(folder: str | Path) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for f in sorted(Path(folder).glob("*.jsonl")):
        out.extend(json.loads(x) for x in f.read_text().splitlines() if x.strip())
    return sorted(out, key=lambda e: e["t0"])
