"""The REST service: submit pipeline jobs, browse snapshots, stream shards.

    assay serve --root /data/assay [--input-root /data/crawl ...] [--host 127.0.0.1 --port 8000]

It touches the core only through the two artifacts that cross every boundary — a
``PipelineSpec`` in, a snapshot manifest out — and never imports torch. Snapshots are
recorded in a SQLite catalog (``<root>/catalog.sqlite``); jobs run one at a time on a
background thread with the LocalExecutor and write to ``<root>/snapshots/<job id>/``, whatever
output the submitted spec names (a spec that arrives over HTTP never chooses where to write).
Inputs must lie under one of the ``--input-root`` folders.

Endpoints: ``GET /health``, ``GET /stages``, ``POST /jobs`` (TOML or JSON spec), ``GET /jobs``,
``GET /jobs/{id}``, ``GET /snapshots``, ``GET /snapshots/{id}`` (the manifest),
``GET /snapshots/{id}/shards/{n}`` (the Parquet file, streamed).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import tomllib
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse

from pipeline.spec import PipelineSpec, SpecError, resolve_paths


class Catalog:
    """SQLite catalog of snapshots and jobs (one file, safe across threads)."""

    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()
        with self._conn() as c:
            c.executescript(
                """
                create table if not exists snapshots (
                    snapshot_id text primary key, name text, path text not null, spec_hash text,
                    rows integer, bytes integer, shards integer, parents text, added_at real);
                create table if not exists jobs (
                    job_id text primary key, status text not null, spec text not null, error text,
                    snapshot_id text, submitted_at real, finished_at real);
                """
            )

    def _conn(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=30)

    def add_snapshot(self, folder: Path) -> dict[str, Any]:
        m = json.loads((folder / "manifest.json").read_text())
        t = m["totals"]
        with self._lock, self._conn() as c:
            c.execute(
                "insert or replace into snapshots values (?,?,?,?,?,?,?,?,?)",
                (m["snapshot_id"], m["name"], str(folder.resolve()), m["spec_hash"], t["rows"], t["bytes"],
                 t["shards"], json.dumps(m.get("parents", [])), time.time()),
            )
        return m

    def snapshots(self) -> list[dict[str, Any]]:
        with self._conn() as c:
            rows = c.execute("select snapshot_id, name, path, spec_hash, rows, bytes, shards, parents from snapshots "
                             "order by added_at").fetchall()
        keys = ("snapshot_id", "name", "path", "spec_hash", "rows", "bytes", "shards", "parents")
        return [{**dict(zip(keys, r, strict=True)), "parents": json.loads(r[7])} for r in rows]

    def snapshot_path(self, snapshot_id: str) -> Path | None:
        with self._conn() as c:
            row = c.execute("select path from snapshots where snapshot_id = ?", (snapshot_id,)).fetchone()
        return Path(row[0]) if row else None

    def set_job(self, job_id: str, **fields: Any) -> None:
        with self._lock, self._conn() as c:
            if c.execute("select 1 from jobs where job_id = ?", (job_id,)).fetchone() is None:
                c.execute("insert into jobs (job_id, status, spec, submitted_at) values (?,?,?,?)",
                          (job_id, fields.pop("status", "queued"), fields.pop("spec", "{}"), time.time()))
            for k, v in fields.items():
                c.execute(f"update jobs set {k} = ? where job_id = ?", (v, job_id))  # keys are ours, not user input

    def job(self, job_id: str) -> dict[str, Any] | None:
        with self._conn() as c:
            row = c.execute("select job_id, status, error, snapshot_id, submitted_at, finished_at from jobs where job_id = ?",
                            (job_id,)).fetchone()
        if row is None:
            return None
        return dict(zip(("job_id", "status", "error", "snapshot_id", "submitted_at", "finished_at"), row, strict=True))

    def jobs(self) -> list[dict[str, Any]]:
        with self._conn() as c:
            ids = [r[0] for r in c.execute("select job_id from jobs order by submitted_at").fetchall()]
        return [j for j in (self.job(i) for i in ids) if j is not None]


def create_app(root: str | Path, input_roots: list[str | Path] | None = None) -> Any:
    root = Path(root)
    (root / "snapshots").mkdir(parents=True, exist_ok=True)
    catalog = Catalog(root / "catalog.sqlite")
    for mf in sorted((root / "snapshots").glob("*/manifest.json")):
        catalog.add_snapshot(mf.parent)
    allowed = [Path(p).resolve() for p in (input_roots or [])]
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="assay-job")
    app = FastAPI(title="assay", version=__import__("pipeline").__version__,
                  description="Submit curation jobs, browse snapshots, stream shards.")
    app.state.catalog = catalog
    app.state.pool = pool

    def _run(job_id: str, spec: PipelineSpec) -> None:
        from pipeline.executor import LocalExecutor

        catalog.set_job(job_id, status="running")
        try:
            LocalExecutor(progress=False).run(spec)
            m = catalog.add_snapshot(Path(spec.output.dir))
            catalog.set_job(job_id, status="succeeded", snapshot_id=m["snapshot_id"], finished_at=time.time())
        except Exception as e:  # the job fails, the service stays up
            catalog.set_job(job_id, status="failed", error=f"{type(e).__name__}: {e}", finished_at=time.time())

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "snapshots": len(catalog.snapshots())}

    @app.get("/stages")
    def stages() -> list[dict[str, Any]]:
        from pipeline.registry import all_stages

        return [{"kind": k, "summary": c.summary, "config": c.Config.model_json_schema()} for k, c in all_stages().items()]

    @app.post("/jobs", status_code=202)
    async def submit(request: Request) -> dict[str, Any]:
        """Body: a spec as TOML (any content type) or JSON (``application/json``)."""
        raw = (await request.body()).decode("utf-8", "replace")
        try:
            data = json.loads(raw) if request.headers.get("content-type", "").startswith("application/json") else tomllib.loads(raw)
        except (json.JSONDecodeError, tomllib.TOMLDecodeError) as e:
            raise HTTPException(422, f"spec is not valid TOML/JSON: {e}") from None
        job_id = uuid.uuid4().hex[:12]
        data.setdefault("output", {})["dir"] = str(root / "snapshots" / job_id)
        try:
            spec = PipelineSpec.from_dict(data)
            for p in resolve_paths(spec.input.paths):
                rp = p.resolve()
                if not any(rp.is_relative_to(a) for a in allowed):
                    raise SpecError(f"input {str(p)!r} is outside the service's input roots "
                                    f"({', '.join(map(str, allowed)) or 'none configured: start with --input-root'})")
        except SpecError as e:
            raise HTTPException(422, str(e)) from None
        catalog.set_job(job_id, status="queued", spec=json.dumps(spec.model_dump(mode="json")))
        pool.submit(_run, job_id, spec)
        return {"job_id": job_id, "status": "queued"}

    @app.get("/jobs")
    def jobs() -> list[dict[str, Any]]:
        return catalog.jobs()

    @app.get("/jobs/{job_id}")
    def job(job_id: str) -> dict[str, Any]:
        j = catalog.job(job_id)
        if j is None:
            raise HTTPException(404, f"no job {job_id!r}")
        stats = root / "snapshots" / job_id / "stats.json"
        if stats.exists():
            j["stats"] = json.loads(stats.read_text())
        return j

    @app.get("/snapshots")
    def snapshots() -> list[dict[str, Any]]:
        return catalog.snapshots()

    def _folder(snapshot_id: str) -> Path:
        p = catalog.snapshot_path(snapshot_id)
        if p is None:
            raise HTTPException(404, f"no snapshot {snapshot_id!r}")
        return p

    @app.get("/snapshots/{snapshot_id}")
    def manifest(snapshot_id: str) -> dict[str, Any]:
        return json.loads((_folder(snapshot_id) / "manifest.json").read_text())

    @app.get("/snapshots/{snapshot_id}/shards/{n}")
    def shard(snapshot_id: str, n: int) -> Any:
        folder = _folder(snapshot_id)
        shards = json.loads((folder / "manifest.json").read_text())["shards"]
        if not 0 <= n < len(shards):
            raise HTTPException(404, f"snapshot {snapshot_id} has {len(shards)} shard(s); no shard {n}")
        s = shards[n]
        return FileResponse(folder / s["path"], media_type="application/vnd.apache.parquet",
                            headers={"X-Shard-Sha256": s["sha256"], "X-Shard-Rows": str(s["rows"])},
                            filename=Path(s["path"]).name)

    return app
