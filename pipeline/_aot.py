"""Ahead-of-time compiled copies of the numba kernels on the ``assay dedup minhash`` path.

Importing numba, setting up its CPU target and loading one cached kernel costs ~0.3-0.4
CPU-s in every process, a tenth of ``assay dedup minhash`` on 25,000 docs. The same kernels
compiled once per machine with ``numba.pycc`` (the same Python source, the same LLVM, for this
CPU) are a plain extension module: importing it needs numpy only.

- :func:`kernels` returns that module (``signatures_and_sets``, ``bucket_pairs``,
  ``verify_spanning``, ``count_words``), building it the first time (~5-10 s, like numba's
  own cold cache) into ``$ASSAY_AOT_DIR`` or ``<numba cache>/../aot/<key>/``; the key hashes
  the kernels' source files, numba's and Python's versions and this CPU's feature flags, so
  any change builds a new one. ``None`` where it cannot be built (no C compiler, no numba,
  not Linux) or ``ASSAY_AOT=0``: the callers then use the numba JIT kernels, the same bits.
- The compiled functions check no argument types: callers go through :func:`call`, which
  passes only arrays of exactly the declared dtype, rank and C layout, else returns
  ``NotImplemented`` (the caller uses the JIT kernel).

Tests compare every AOT kernel with its JIT twin bit for bit (``tests/dedup/test_aot.py``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import platform
import shutil
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

MODULE = "_assay_aot_kernels"
_SOURCES = ("dedup/kernels.py", "dedup/cc_kernels.py", "pipeline/_wordcount.py", "pipeline/_aot.py")
_ROOT = Path(__file__).resolve().parents[1]

# name -> (module, function, argument kinds, result); kinds: (dtype, ndim) for a C array, or a
# scalar type name. Must be what the callers pass (see call()).
_A = lambda dt, nd=1: (np.dtype(dt), nd)  # noqa: E731
SPECS: dict[str, tuple[str, str, tuple[Any, ...], Any]] = {
    "signatures_and_sets": ("dedup.kernels", "signatures_and_sets",
                            (_A("u1"), _A("i8"), _A("u1"), _A("u8"), _A("u8"), "int64", _A("u4", 2), _A("i8")),
                            _A("u4")),
    "bucket_pairs": ("dedup.cc_kernels", "bucket_pairs",
                     (_A("i8"), _A("i8"), _A("i8"), "int64", "int64", "int64", "boolean", _A("i8"), _A("i8")),
                     "int64"),
    "verify_spanning": ("dedup.cc_kernels", "verify_spanning",
                        (_A("i8"), _A("i8"), _A("u4"), _A("i8"), "float64", "boolean", _A("i8"), _A("?"), _A("i8")),
                        "none"),
    "verify_spanning_sets": ("dedup.cc_kernels", "verify_spanning_sets",
                             (_A("i8"), _A("i8"), _A("i8"), _A("i8"), _A("u4"), _A("i8"), _A("u4"), _A("i8"),
                              "float64", _A("i8"), _A("?"), _A("i8")),
                             "none"),
    "count_words": ("pipeline._wordcount", "count_words", (_A("u1"), _A("i8")), "int64"),
}

_STATE: dict[str, Any] = {}


def _cpu_flags() -> str | None:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None


def _key() -> str | None:
    flags = _cpu_flags()
    if flags is None or not sys.platform.startswith("linux"):
        return None
    try:
        from importlib.metadata import version

        nb = version("numba")
    except Exception:  # noqa: BLE001 - numba not installed: nothing to build with
        return None
    h = hashlib.sha256()
    for rel in _SOURCES:
        h.update((_ROOT / rel).read_bytes())
    h.update(f"{nb}|{sys.version}|{platform.machine()}|{flags}".encode())
    return h.hexdigest()[:20]


def _dir(key: str) -> Path:
    d = os.environ.get("ASSAY_AOT_DIR")
    if d:
        return Path(d) / key
    cache = os.environ.get("NUMBA_CACHE_DIR") or str(
        Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "assay" / "numba")
    return Path(cache).parent / "aot" / key


def _load(d: Path) -> ModuleType | None:
    for f in d.glob(f"{MODULE}*.so"):
        spec = importlib.util.spec_from_file_location(MODULE, f)
        if spec is None or spec.loader is None:
            return None
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod
    return None


def _numba_type(kind: Any) -> Any:
    from numba import types

    if isinstance(kind, str):
        return types.none if kind == "none" else getattr(types, kind)
    dt, nd = kind
    return types.Array(getattr(types, {"u1": "uint8", "u4": "uint32", "u8": "uint64", "i8": "int64",
                                       "b1": "boolean"}[dt.str[1:]]), nd, "C")


def build(d: Path) -> None:
    """Compile the kernels of :data:`SPECS` into ``d`` (atomically: a temp folder renamed)."""
    from numba.pycc import CC

    from pipeline._numba_cache import numba_with_cache

    numba_with_cache()
    d.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{d.name}-", dir=d.parent))
    try:
        cc = CC(MODULE)
        cc.output_dir = str(tmp)
        cc.target_cpu = "host"
        cc.verbose = False
        for name, (mod, fn, args, res) in SPECS.items():
            func = getattr(importlib.import_module(mod), fn).py_func
            cc.export(name, _numba_type(res)(*[_numba_type(a) for a in args]))(func)
        build_tmp = tmp / "build"
        build_tmp.mkdir()
        old = tempfile.tempdir
        tempfile.tempdir = str(build_tmp)  # pycc's intermediate files
        try:
            cc.compile()
        finally:
            tempfile.tempdir = old
        shutil.rmtree(build_tmp, ignore_errors=True)
        try:
            tmp.rename(d)
        except OSError:  # another process built it first
            if not d.exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _say(msg: str) -> None:
    """One line on stderr, above any progress bar that is showing."""
    tqdm = sys.modules.get("tqdm")
    if tqdm is not None and hasattr(tqdm, "tqdm"):
        tqdm.tqdm.write(msg, file=sys.stderr)
    else:
        print(msg, file=sys.stderr, flush=True)


def kernels() -> ModuleType | None:
    """The AOT module (built on first use), or None: then use the JIT kernels."""
    if "mod" in _STATE:
        return _STATE["mod"]
    mod = None
    if os.environ.get("ASSAY_AOT", "1") != "0":
        key = _key()
        if key is not None:
            d = _dir(key)
            try:
                mod = _load(d) if d.exists() else None
                if mod is None and not (d.parent / f"{key}.failed").exists():
                    try:
                        _say(f"assay: compiling the dedup kernels once for this machine (~10 s) into {d}"
                             " (ASSAY_AOT=0 skips it)")
                        build(d)
                    except Exception as e:  # noqa: BLE001 - no compiler, pycc missing...: JIT it is
                        d.parent.mkdir(parents=True, exist_ok=True)
                        (d.parent / f"{key}.failed").write_text(f"{type(e).__name__}: {e}\n")
                    mod = _load(d) if d.exists() else None
            except (OSError, ImportError):
                mod = None
    _STATE["mod"] = mod
    return mod


def call(name: str, *args: Any) -> Any:
    """``name``'s AOT kernel on ``args`` if they are exactly its declared kinds, else
    ``NotImplemented`` (no AOT module, or another dtype/rank/layout: use the JIT kernel)."""
    mod = kernels()
    if mod is None:
        return NotImplemented
    kinds = SPECS[name][2]
    for a, kind in zip(args, kinds, strict=True):
        if isinstance(kind, str):
            continue
        dt, nd = kind
        if not (isinstance(a, np.ndarray) and a.dtype == dt and a.ndim == nd and a.flags.c_contiguous):
            return NotImplemented
    return getattr(mod, name)(*args)
