"""The REST job service and snapshot catalog (``assay serve``).

    assay token create --root ROOT --role submit --name alice   # printed once, stored hashed
    assay serve --root ROOT --input-root /data/crawl [--catalog postgresql://...] [--max-jobs 2]

Modules: :mod:`.app` (FastAPI routes under ``/v1``), :mod:`.catalog` (SQLAlchemy: SQLite or
PostgreSQL), :mod:`.confine` (every spec path under the roots), :mod:`.bodies` (bounded,
strict request bodies), :mod:`.runner` (supervised worker process per job),
:mod:`.worker` (one job), :mod:`.report` (the HTML report), :mod:`.metrics` (Prometheus).
"""

from __future__ import annotations

from typing import Any


def create_app(*args: Any, **kwargs: Any) -> Any:
    from pipeline.service.app import create_app as _create

    return _create(*args, **kwargs)


__all__ = ["create_app"]
