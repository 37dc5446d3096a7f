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
from collections.abc import Callable
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

#: the text filters' kernels (``pipeline.filters._wordkernels``: the words of Gopher quality and
#: repetition, their statistics), a second module with its own key: building or changing one
#: group does not rebuild the other. A list is a tuple of results.
_U1, _I8, _U4, _U8, _F8 = _A("u1"), _A("i8"), _A("u4"), _A("u8"), _A("f8")
WORD_MODULE = "_assay_aot_words"
_WK = "pipeline.filters._wordkernels"
WORD_SPECS: dict[str, tuple[str, str, tuple[Any, ...], Any]] = {
    "chunk_bounds": (_WK, "chunk_bounds", (_U1, _I8, _I8), [_I8, _I8, _I8]),
    "split_chunks": (_WK, "split_chunks",
                     (_U1, _I8, _I8, _I8, _U1, _U8, _U4, _U8, _U1, _I8, _U1, _I8, _A("u8", 2), _I8, _U1),
                     [_I8, _I8, _U1, _I8]),
    "cache_put": (_WK, "cache_put", (_A("u8", 2), _I8, _U8, _U8), "none"),
    "hash_spans": (_WK, "hash_spans", (_U1, _I8, _I8), _U8),
    "expand": (_WK, "expand", (_I8, _I8, _U1, _I8, _I8, _I8, _I8), [_I8, _I8, _I8]),
    "quality_stats": (_WK, "quality_stats", (_U1, _I8, _I8, _I8, _U1, _U1, _U1, _I8), _A("i8", 2)),
    "char_counts": (_WK, "char_counts", (_U1, _I8, _I8), _A("i8", 2)),
    "repetition": (_WK, "repetition", (_U1, _I8, _I8, _I8, _I8, _I8, _F8, _I8, _F8), _I8),
    "repetition_lines": (_WK, "repetition_lines", (_U1, _I8, _I8), _A("i8", 2)),
}
_WORD_SOURCES = ("pipeline/filters/_wordkernels.py", "pipeline/filters/_wordtables.py", "pipeline/_aot.py")

#: group -> (module name, specs, source files in its key, what it compiles: for the message)
_GROUPS: dict[str, tuple[str, dict[str, tuple[str, str, tuple[Any, ...], Any]], tuple[str, ...], str]] = {
    "dedup": (MODULE, SPECS, _SOURCES, "the dedup kernels"),
    "words": (WORD_MODULE, WORD_SPECS, _WORD_SOURCES, "the text filters' word kernels"),
}
_GROUP_OF = {name: g for g, (_, specs, _, _) in _GROUPS.items() for name in specs}

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


def _key(sources: tuple[str, ...] = _SOURCES) -> str | None:
    flags = _cpu_flags()
    if flags is None or not sys.platform.startswith("linux"):
        return None
    try:
        from importlib.metadata import version

        nb = version("numba")
    except Exception:  # noqa: BLE001 - numba not installed: nothing to build with
        return None
    h = hashlib.sha256()
    for rel in sources:
        h.update((_ROOT / rel).read_bytes())
    h.update(f"{nb}|{sys.version}|{platform.machine()}|{flags}".encode())
    return h.hexdigest()[:20]


def _dir(key: str) -> Path:
    d = os.environ.get("ASSAY_AOT_DIR")
    if d:
        return Path(d) / key
    from pipeline._numba_cache import default_cache_dir

    return Path(default_cache_dir()).parent / "aot" / key


def _load(d: Path, module: str = MODULE) -> ModuleType | None:
    for f in d.glob(f"{module}*.so"):
        spec = importlib.util.spec_from_file_location(module, f)
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
    if isinstance(kind, list):
        return types.Tuple(tuple(_numba_type(k) for k in kind))
    dt, nd = kind
    return types.Array(getattr(types, {"u1": "uint8", "u4": "uint32", "u8": "uint64", "i8": "int64",
                                       "b1": "boolean", "f8": "float64"}[dt.str[1:]]), nd, "C")


def build(d: Path, group: str = "dedup") -> None:
    """Compile the kernels of ``group`` (:data:`SPECS`, :data:`WORD_SPECS`) into ``d``
    (atomically: a temp folder renamed)."""
    from numba.pycc import CC

    from pipeline._numba_cache import numba_with_cache

    numba_with_cache()
    d.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{d.name}-", dir=d.parent))
    try:
        module, specs = _GROUPS[group][:2]
        cc = CC(module)
        cc.output_dir = str(tmp)
        cc.target_cpu = "host"
        cc.verbose = False
        for name, (mod, fn, args, res) in specs.items():
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


def kernels(group: str = "dedup") -> ModuleType | None:
    """The AOT module of ``group`` (built on first use), or None: then use the JIT kernels."""
    if group in _STATE:
        return _STATE[group]
    module, _, sources, what = _GROUPS[group]
    mod = None
    if os.environ.get("ASSAY_AOT", "1") != "0":
        key = _key(sources)
        if key is not None:
            d = _dir(key)
            try:
                mod = _load(d, module) if d.exists() else None
                if mod is None and not (d.parent / f"{key}.failed").exists():
                    try:
                        _say(f"assay: compiling {what} once for this machine (~10 s) into {d}"
                             " (ASSAY_AOT=0 skips it)")
                        build(d, group)
                    except Exception as e:  # noqa: BLE001 - no compiler, pycc missing...: JIT it is
                        d.parent.mkdir(parents=True, exist_ok=True)
                        (d.parent / f"{key}.failed").write_text(f"{type(e).__name__}: {e}\n")
                    mod = _load(d, module) if d.exists() else None
            except (OSError, ImportError):
                mod = None
    _STATE[group] = mod
    return mod


def call(name: str, *args: Any) -> Any:
    """``name``'s AOT kernel on ``args`` if they are exactly its declared kinds, else
    ``NotImplemented`` (no AOT module, or another dtype/rank/layout: use the JIT kernel)."""
    group = _GROUP_OF[name]
    mod = kernels(group)
    if mod is None:
        return NotImplemented
    kinds = _GROUPS[group][1][name][2]
    for a, kind in zip(args, kinds, strict=True):
        if isinstance(kind, str):
            continue
        dt, nd = kind
        if not (isinstance(a, np.ndarray) and a.dtype == dt and a.ndim == nd and a.flags.c_contiguous):
            return NotImplemented
    return getattr(mod, name)(*args)


def call_or_jit(name: str, jit: Callable[[], Callable[..., Any]], *args: Any) -> Any:
    """``name``'s AOT kernel on ``args`` (see :func:`call`), else the JIT kernel that ``jit()``
    returns (called only then, so numba is imported only when the JIT kernel is needed)."""
    got = call(name, *args)
    return jit()(*args) if got is NotImplemented else got
