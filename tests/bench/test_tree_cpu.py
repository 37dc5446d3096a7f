"""The benches' process-tree CPU accounting counts forkserver workers, which a plain
``RUSAGE_CHILDREN`` around the child misses (the forkserver is orphaned, never waited for)."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys

import pytest

from bench._tree_cpu import REPO, run_cmd_measured, run_measured

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl subreaper is Linux-only")

BURN = 0.6  # CPU-seconds per worker


def test_workers_cpu_is_counted() -> None:
    r = run_measured("bench._tree_cpu:_burn", {"workers": 2, "cpu_s": BURN})
    assert len(r["spent"]) == 2 and min(r["spent"]) >= BURN
    # both workers' CPU is inside, beside the runner's own start-up
    assert r["tree_cpu_s"] >= 2 * BURN, r
    assert r["tree_cpu_s"] < 2 * BURN + 10, r


def test_plain_rusage_children_misses_forkserver_workers() -> None:
    """The measurement the benches used before: it undercounts, which is why they changed."""
    code = ("import json, sys; sys.path.insert(0, sys.argv[1]); from bench._tree_cpu import _burn; "
            f"print(json.dumps(_burn(2, {BURN})))")
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    p = subprocess.run([sys.executable, "-c", code, str(REPO)], capture_output=True, text=True, check=True)
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    naive = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    assert len(json.loads(p.stdout)["spent"]) == 2
    assert naive < 2 * BURN, naive  # the workers' 1.2 CPU-s are not all there

    code_cmd = [sys.executable, "-c", code, str(REPO)]
    full = run_cmd_measured(code_cmd, env=dict(os.environ))
    assert full["cpu_s"] >= 2 * BURN, full
