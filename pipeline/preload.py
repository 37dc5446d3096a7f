"""What the process pool's fork server loads once, so that its workers start warm.

``LocalExecutor(workers > 1)`` starts its workers with the ``forkserver`` method: a clean
server process forks each worker. By default the server imports almost nothing, so every
worker paid again for what one process pays once — measured on the ``bench scale`` spec:
~0.6 CPU-s of imports (pandas, which pyarrow's ``from_pylist`` pulls in; polars; the stage
modules) and ~0.9 CPU-s for numba (its import,
the import of scipy.linalg it triggers, and loading each cached kernel from disk), i.e. about
1.5 CPU-s more per extra worker.

:func:`modules_for` names what the server imports before it forks anything (the base modules
every shard uses, each stage class's module and the modules it declares in
``Stage.preload``); importing ``pipeline._forkserver_warm`` last loads, in the server, every numba kernel of
those modules whose on-disk cache matches this machine and source — loading only: a kernel
without a matching cache entry is left to compile lazily where it is first called, as before.
Workers forked afterwards share those pages copy-on-write.

This only moves work; it never changes what a worker computes (the pool's byte-identity tests
run with it).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

#: what every shard task uses whatever the stages
BASE_MODULES: tuple[str, ...] = (
    "numpy",
    "pandas",  # pyarrow's Table.from_pylist imports it (readers): 0.3 CPU-s per process
    "pyarrow",
    "pyarrow.compute",
    "pyarrow.parquet",
    "pipeline.executor",
    "pipeline.reduce",
    "pipeline.tokens",
    "pipeline._wordcount",
)

_CODE_ROOT = Path(__file__).resolve().parents[1]


def modules_for(stages: list[Any]) -> list[str]:
    """Fork-server preload list for these stages (``__main__`` first, as multiprocessing does)."""
    names: list[str] = ["__main__", *BASE_MODULES]
    for st in stages:
        for mod in (type(st).__module__, *getattr(type(st), "preload", ())):
            if mod not in names:
                names.append(mod)
    names.append("pipeline._forkserver_warm")  # last: warms the kernels of everything above
    return names


def warm_numba_caches() -> int:
    """Load every cached numba kernel of this project's imported modules; returns how many."""
    if "numba" not in sys.modules:
        return 0
    try:
        from numba.core.dispatcher import Dispatcher
    except ImportError:  # pragma: no cover - numba layout changed: stay lazy
        return 0
    loaded = 0
    for name, mod in list(sys.modules.items()):
        path = getattr(mod, "__file__", None)
        if not path or not Path(path).resolve().is_relative_to(_CODE_ROOT):
            continue
        for obj in list(vars(mod).values()):
            if isinstance(obj, Dispatcher):
                loaded += _load_cached(obj)
    return loaded


def _load_cached(disp: Any) -> int:
    """Load ``disp``'s overloads from its disk cache where the cache's key matches exactly."""
    try:
        cache = disp._cache
        index = cache._cache_file._load_index()
        codegen = disp.targetctx.codegen()
    except Exception:  # noqa: BLE001 - no cache (cache=False), unreadable index: stay lazy
        return 0
    n = 0
    for key in index:
        sig = key[0]  # the argument types (a tuple)
        try:
            args = tuple(sig) if isinstance(sig, tuple) else tuple(sig.args)
            if cache._index_key(sig, codegen) != key or args in disp.overloads:
                continue  # stale entry (other source or CPU): compiling it here would be real work
            disp.compile(sig)
            n += 1
        except Exception:  # noqa: BLE001 - a kernel that fails to load stays lazy
            continue
    return n
