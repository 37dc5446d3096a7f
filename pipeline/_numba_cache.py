"""numba with its on-disk kernel cache in a writable folder.

numba reads ``NUMBA_CACHE_DIR`` when it is first imported, and site-packages or a read-only
checkout may not be writable, so every module with ``cache=True`` kernels imports numba through
:func:`numba_with_cache`: ``$NUMBA_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/assay/numba``
(``~/.cache/assay/numba``). Imports numba: call it lazily, from a kernel module.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType


def numba_with_cache() -> ModuleType:
    d = os.environ.get("NUMBA_CACHE_DIR") or str(
        Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "assay" / "numba"
    )
    os.environ.setdefault("NUMBA_CACHE_DIR", d)
    Path(os.environ["NUMBA_CACHE_DIR"]).mkdir(parents=True, exist_ok=True)

    import numba

    if not numba.config.CACHE_DIR:
        numba.config.CACHE_DIR = os.environ["NUMBA_CACHE_DIR"]
    return numba
