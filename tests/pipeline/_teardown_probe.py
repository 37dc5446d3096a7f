"""Test probe: records every ``setup()`` / ``teardown()`` of two real stages, with the pid of the
process that ran it, in the file named by ``ASSAY_TEARDOWN_LOG``. Installed in pool workers by
the driver script's top level (the fork server preloads ``__main__``) and in Ray workers by
``runtime_env={"worker_process_setup_hook": ...}``."""

from __future__ import annotations

import os
import sys
import time


def install() -> None:
    log = os.environ.get("ASSAY_TEARDOWN_LOG")
    if not log:
        return
    from dedup.exact import ExactDedupStage
    from pipeline.filters.basic import LengthFilterStage

    def note(what: str, name: str) -> None:
        with open(log, "a") as fh:
            fh.write(f"{os.getpid()} {what} {name}\n")

    for cls in (LengthFilterStage, ExactDedupStage):
        if getattr(cls, "_probed", False):
            continue
        setup, teardown = cls.setup, cls.teardown

        def probed_setup(self, _f=setup):  # type: ignore[no-untyped-def]
            note("setup", self.name)
            if "ray" in sys.modules and sys.modules["ray"].is_initialized():  # in a Ray actor: what it holds
                res = sys.modules["ray"].get_runtime_context().get_assigned_resources()
                note("resources", f"{self.name}:{res.get('memory', 0.0) / 2**30:g}")
            _f(self)

        def probed_teardown(self, _f=teardown):  # type: ignore[no-untyped-def]
            # a slow teardown (a model flushing its cache, say): noted only once it has finished
            time.sleep(float(os.environ.get("ASSAY_TEARDOWN_SLOW_S", "0")))
            note("teardown", self.name)
            _f(self)

        cls.setup, cls.teardown, cls._probed = probed_setup, probed_teardown, True  # type: ignore[method-assign]


def read(log: str) -> dict[int, dict[str, list[str]]]:
    """{pid: {"setup": [stage names], "teardown": [...], "resources": ["stage:memory GiB"]}}."""
    out: dict[int, dict[str, list[str]]] = {}
    with open(log) as fh:
        for line in fh:
            pid, what, name = line.split()
            out.setdefault(int(pid), {"setup": [], "teardown": [], "resources": []})[what].append(name)
    return out
