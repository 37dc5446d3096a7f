"""pipeline._numba_cache: numba's start-up skips its eager scipy/BLAS probe, and a kernel that
does use BLAS still compiles and gets the right answer (the probe runs when it is needed); a
cache folder that cannot be made or written is one line naming NUMBA_CACHE_DIR."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pipeline import _numba_cache

REPO = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    from dedup import signature
    signature.warm_up()  # loads the dedup kernels: numba's CPU target is set up
    print("scipy.linalg after loading kernels:", "scipy.linalg" in sys.modules)
    import numba
    from numba.np import arraymath
    print("have_blas:", arraymath._HAVE_BLAS)

    @numba.njit
    def dot(a, b):
        return np.dot(a, b)

    a = np.arange(6, dtype=np.float64).reshape(2, 3)
    b = np.arange(3, dtype=np.float64)
    print("dot ok:", bool(np.allclose(dot(a, b), a @ b)))
    print("scipy.linalg after a BLAS kernel:", "scipy.linalg" in sys.modules)
    """
)


def test_blas_probe_is_deferred_until_a_kernel_needs_it(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=REPO,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HOME": str(Path.home())},
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout
    assert "scipy.linalg after loading kernels: False" in out
    assert "have_blas: True" in out  # scipy is installed in the dev env (numba's own answer)
    assert "dot ok: True" in out
    assert "scipy.linalg after a BLAS kernel: True" in out


BAD_DIRS = {  # NUMBA_CACHE_DIR -> what the one line says
    "a-file": "is a file, not a folder",
    "a-file/sub": "cannot make the folder",
    "/proc": "is not writable",  # exists; nobody (root included) can create a file in it
}


def _bad(tmp_path: Path, name: str) -> str:
    (tmp_path / "a-file").write_text("x")
    return name if name.startswith("/") else str(tmp_path / name)


@pytest.mark.parametrize("name", BAD_DIRS)
def test_a_bad_cache_dir_is_one_error_naming_the_variable(tmp_path: Path, monkeypatch, name: str) -> None:
    d = _bad(tmp_path, name)
    monkeypatch.setenv("NUMBA_CACHE_DIR", d)
    monkeypatch.setattr(_numba_cache, "_CHECKED", set())
    with pytest.raises(_numba_cache.CacheDirError) as e:
        _numba_cache.numba_with_cache()  # what every kernel module calls when it is imported
    assert str(e.value).startswith(f"NUMBA_CACHE_DIR={d!r}: ") and BAD_DIRS[name] in str(e.value)
    assert "\n" not in str(e.value)


def test_assay_refuses_a_bad_cache_dir_before_any_work(tmp_path: Path) -> None:
    import os

    d = _bad(tmp_path, "a-file")
    p = subprocess.run([sys.executable, "-m", "pipeline.cli", "run", str(REPO / "examples" / "demo.toml"),
                        "--output", str(tmp_path / "out"), "--no-progress"], cwd=REPO, capture_output=True, text=True,
                       timeout=120, env={**os.environ, "PYTHONPATH": str(REPO), "NUMBA_CACHE_DIR": d})
    assert p.returncode == 2 and p.stderr.strip().splitlines() == [
        f"error: NUMBA_CACHE_DIR={d!r}: {d!r} is a file, not a folder (numba keeps its compiled kernels there)"], p.stderr
    assert not (tmp_path / "out").exists()
