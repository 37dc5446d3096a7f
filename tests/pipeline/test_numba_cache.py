"""pipeline._numba_cache: numba's start-up skips its eager scipy/BLAS probe, and a kernel that
does use BLAS still compiles and gets the right answer (the probe runs when it is needed)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

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
