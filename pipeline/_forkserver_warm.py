"""Imported last by the process pool's fork server: load the cached numba kernels (see pipeline.preload)."""

import time as _time

from pipeline import _trace
from pipeline.preload import warm_numba_caches

WARMED = warm_numba_caches()
if _trace.enabled():  # the server's start-up: its imports and the kernels, up to here
    _trace.record("forkserver", "preload", _trace.process_start_time(), _time.time(), _time.process_time(),
                  _trace.run_queue_wait())
