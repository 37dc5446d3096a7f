"""Imported last by the process pool's fork server: load the cached numba kernels (see pipeline.preload)."""

from pipeline.preload import warm_numba_caches

WARMED = warm_numba_caches()
