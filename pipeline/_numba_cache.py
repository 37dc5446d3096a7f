"""numba with its on-disk kernel cache in a writable folder, and without its eager BLAS probe.

numba reads ``NUMBA_CACHE_DIR`` when it is first imported, and site-packages or a read-only
checkout may not be writable, so every module with ``cache=True`` kernels imports numba through
:func:`numba_with_cache`: ``$NUMBA_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/assay/numba``
(``~/.cache/assay/numba``). Imports numba: call it lazily, from a kernel module.

numba's CPU target, when it is first set up (the first kernel compiled or loaded from the
cache), imports ``numba.np.arraymath``, which imports ``scipy.linalg`` only to learn whether
BLAS is there for ``np.dot`` (~0.12 CPU-s, a third of loading the first cached kernel). Our
kernels use no BLAS, so :func:`_defer_blas_probe` answers that question from the installed
packages instead; a kernel that does use ``np.dot``/``np.linalg`` still imports and checks
scipy when it is compiled (numba's ``ensure_blas`` runs then too).
"""

from __future__ import annotations

import importlib.util
import os
import sys
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
    _defer_blas_probe()
    return numba


def _defer_blas_probe() -> None:
    """Import ``numba.np.arraymath`` with its import-time BLAS probe answered without scipy."""
    if "numba.np.arraymath" in sys.modules:
        return
    try:
        from numba.np import linalg
    except ImportError:  # another numba layout: leave it alone
        return
    probe = getattr(linalg, "ensure_blas", None)
    if probe is None:
        return
    linalg.ensure_blas = lambda: None
    try:
        from numba.np import arraymath
    finally:
        linalg.ensure_blas = probe
    if hasattr(arraymath, "_HAVE_BLAS"):
        arraymath._HAVE_BLAS = importlib.util.find_spec("scipy") is not None
