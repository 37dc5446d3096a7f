"""numba with its on-disk kernel cache in a writable folder, and without its eager BLAS probe.

numba reads ``NUMBA_CACHE_DIR`` when it is first imported, and site-packages or a read-only
checkout may not be writable, so every module with ``cache=True`` kernels imports numba through
:func:`numba_with_cache`: ``$NUMBA_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/assay/numba``
(``~/.cache/assay/numba``). Imports numba: call it lazily, from a kernel module. A folder that
cannot be made or written (a file, a read-only place) is :class:`CacheDirError`, one line naming
the variable (``assay`` checks a set ``NUMBA_CACHE_DIR`` before any work: :func:`cache_dir`);
numba alone would raise a bare ``FileExistsError`` at the first kernel module's import, or fall
back to another cache folder without a word.

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
import tempfile
from pathlib import Path
from types import ModuleType


class CacheDirError(OSError):
    """The numba cache folder cannot be used; the message is one line naming the variable."""


_CHECKED: set[str] = set()


def default_cache_dir() -> str:
    """``$NUMBA_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/assay/numba`` (``~/.cache/assay/numba``)."""
    return os.environ.get("NUMBA_CACHE_DIR") or str(
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "assay" / "numba")


def check_cache_dir() -> str:
    """:func:`default_cache_dir`, made if missing and checked writable (once per process and
    folder), else :class:`CacheDirError`. Does not import numba."""
    d = default_cache_dir()
    if d in _CHECKED:
        return d
    set_to = os.environ.get("NUMBA_CACHE_DIR")
    shown = f"NUMBA_CACHE_DIR={set_to!r}" if set_to else f"NUMBA_CACHE_DIR (not set: the default {d!r})"
    try:
        Path(d).mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise CacheDirError(f"{shown}: {d!r} is a file, not a folder (numba keeps its compiled kernels there)") from None
    except OSError as e:
        raise CacheDirError(f"{shown}: cannot make the folder {d!r} ({e.strerror or e})") from None
    try:
        tempfile.TemporaryFile(dir=d).close()
    except OSError as e:
        raise CacheDirError(f"{shown}: the folder {d!r} is not writable ({e.strerror or e}); "
                            "point NUMBA_CACHE_DIR at a folder you can write") from None
    _CHECKED.add(d)
    return d


def cache_dir() -> str:
    """:func:`check_cache_dir`, and ``NUMBA_CACHE_DIR`` set to it (for numba, read when it is
    first imported, and for child processes)."""
    d = check_cache_dir()
    os.environ.setdefault("NUMBA_CACHE_DIR", d)
    return d


def numba_with_cache() -> ModuleType:
    cache_dir()

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
