"""The FastAPI application: ``/v1`` jobs, snapshots, names, tokens; ``/health``; ``/metrics``.

The API process validates, authorizes, records and answers. It never does corpus work, never
blocks its event loop on the disk (catalog and file work runs in the thread pool; globs are
expanded there by a bounded walk), and never imports torch. Jobs run in worker processes
started by :class:`pipeline.service.runner.Supervisor`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import time
import uuid
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Query, Request, Security
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, PlainTextResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException

import pipeline
from pipeline.service import models as M
from pipeline.service.bodies import SIMPLE_TYPES, SPEC_TYPES, Policy, check_policy, mime, parse_spec_body, read_body
from pipeline.service.catalog import FINAL, ROLES, Catalog, catalog_url, jobs
from pipeline.service.confine import Confiner, Limits, confine_spec
from pipeline.service.runner import Supervisor
from pipeline.service.worker import Scrubber
from pipeline.spec import PipelineSpec, SpecError

JOB_ID = r"^[0-9a-f]{16}$"
SNAP_REF = r"^[A-Za-z0-9_.-]{1,200}(@[A-Za-z0-9_.-]{1,64})?$"
NAME = r"^[A-Za-z0-9_.-]{1,200}$"

JobIdParam = Annotated[str, PathParam(pattern=JOB_ID)]
SnapRef = Annotated[str, PathParam(pattern=SNAP_REF)]

ERR = {"model": M.Error}
AUTH_ERRORS: dict[int | str, dict[str, Any]] = {401: {**ERR, "description": "no or invalid token"},
                                                 403: {**ERR, "description": "the token's role is too weak"}}


def _page(offset: int, limit: int, total: int) -> int | None:
    return offset + limit if offset + limit < total else None


def create_app(root: str | Path, input_roots: list[str | Path] | None = None, *, catalog: str | None = None,
               max_jobs: int = 2, ray: str | None = None, keep_failed_s: float = 24 * 3600,
               policy: Policy | None = None, limits: Limits | None = None, run_jobs: bool = True) -> FastAPI:
    root = Path(root).resolve()
    for sub in ("snapshots", "work", "logs"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    roots = [str(Path(r).resolve()) for r in (input_roots or [])]
    url = catalog_url(root, catalog)
    cat = Catalog(url)
    policy = policy or Policy()
    scrub = Scrubber(root, roots)

    def snapshot_folder(ref: str) -> Path | None:
        sid = cat.resolve(ref)
        if sid is None:
            return None
        row = cat.snapshot(sid)
        return (root / row["folder"]) if row else None

    confiner = Confiner(roots, snapshot_folder, limits)
    supervisor = Supervisor(cat, url, root, roots, max_jobs=max_jobs, ray=ray, keep_failed_s=keep_failed_s)

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # type: ignore[no-untyped-def]
        if run_jobs:
            await run_in_threadpool(supervisor.start)
        yield
        if run_jobs:
            await run_in_threadpool(supervisor.stop)
        cat.dispose()

    # no /docs or /redoc (they load their JS from a CDN and cannot send a bearer token);
    # the OpenAPI document itself is a read route like every other
    app = FastAPI(title="assay", version=pipeline.__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None,
                  description="Submit curation jobs, follow them, browse and pull content-addressed snapshots. "
                  "Every route but /health needs `Authorization: Bearer <token>` (`assay token create`).")
    app.state.catalog = cat
    app.state.supervisor = supervisor
    app.state.root = root
    from pipeline.service.metrics import Metrics

    metrics = Metrics(cat)
    app.state.metrics = metrics
    app.add_middleware(_Guard, policy=policy, metrics=metrics)

    # -- errors: always {"detail": "one line"} ---------------------------------------------

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"detail": str(exc.detail)}, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        e = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        loc = ".".join(str(x) for x in e.get("loc", ()))
        return JSONResponse({"detail": f"{loc}: {e.get('msg', 'invalid')}"[:500]}, status_code=422)

    # -- auth --------------------------------------------------------------------------------

    bearer = HTTPBearer(auto_error=False, description="a token from `assay token create`")

    def need(role: str) -> Any:
        rank = ROLES.index(role)

        def check(request: Request, cred: HTTPAuthorizationCredentials | None = Security(bearer)) -> str:
            if cred is None or not cred.credentials or len(cred.credentials) > 256:
                raise HTTPException(401, "missing bearer token: send Authorization: Bearer <token>",
                                    headers={"WWW-Authenticate": "Bearer"})
            got = cat.token_role(cred.credentials)
            if got is None:
                raise HTTPException(401, "invalid or revoked token", headers={"WWW-Authenticate": "Bearer"})
            if ROLES.index(got[0]) < rank:
                raise HTTPException(403, f"this needs a {role} token; yours is {got[0]}")
            request.state.token_name = got[1]
            return got[1]

        return Depends(check)

    READ, SUBMIT, ADMIN = need("read"), need("submit"), need("admin")

    # -- health, index, metrics --------------------------------------------------------------

    @app.get("/health", response_model=M.Health, tags=["service"])
    async def health() -> dict[str, Any]:
        """Liveness (no auth). Answers while jobs run and while large bodies stream in."""
        return {"status": "ok", "version": pipeline.__version__}

    @app.get("/", response_class=HTMLResponse, tags=["service"], responses=AUTH_ERRORS)
    def index(_: str = READ) -> str:
        from html import escape

        js, _n = cat.jobs(limit=50)
        ss, _m = cat.snapshots(limit=50)
        rows_j = "".join(f"<tr><td><a href='/v1/jobs/{j['id']}'>{j['id']}</a></td><td>{escape(j['name'])}</td>"
                         f"<td>{j['status']}</td><td>{escape(j['snapshot_id'] or '')}</td></tr>" for j in js)
        rows_s = "".join(f"<tr><td><a href='/v1/snapshots/{s['id']}'>{s['id']}</a></td><td>{escape(s['name'])}</td>"
                         f"<td>{s['rows']:,}</td><td>{s['shards']}</td><td><a href='/v1/snapshots/{s['id']}/report'>report</a>"
                         "</td></tr>" for s in ss)
        return ("<!doctype html><html><head><meta charset='utf-8'><title>assay</title></head><body>"
                f"<h1>assay {pipeline.__version__}</h1><h2>Jobs</h2><table><tr><th>id</th><th>name</th><th>status</th>"
                f"<th>snapshot</th></tr>{rows_j}</table><h2>Snapshots</h2><table><tr><th>id</th><th>name</th><th>rows</th>"
                f"<th>shards</th><th></th></tr>{rows_s}</table><p>API: <code>/openapi.json</code></p></body></html>")

    @app.get("/metrics", response_class=PlainTextResponse, tags=["service"], responses=AUTH_ERRORS)
    def metrics_route(_: str = READ) -> Response:
        """Prometheus text: jobs by state, documents per stage kind, request latency histograms."""
        body, ctype = metrics.render()
        return Response(body, media_type=ctype)

    @app.get("/openapi.json", include_in_schema=False)
    def openapi_doc(_: str = READ) -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/v1/stages", response_model=list[M.StageInfo], tags=["service"], responses=AUTH_ERRORS)
    def stages(_: str = READ) -> list[dict[str, Any]]:
        from pipeline.registry import all_stages

        return [{"kind": k, "summary": c.summary or "", "path_fields": c.Config.path_fields(),
                 "config": c.Config.model_json_schema()} for k, c in all_stages().items()]

    # -- jobs --------------------------------------------------------------------------------

    def _job_out(j: dict[str, Any]) -> dict[str, Any]:
        return {"id": j["id"], "status": j["status"], "name": j["name"], "snapshot_id": j["snapshot_id"],
                "error": j["error"], "submitted_at": j["submitted_at"], "started_at": j["started_at"],
                "finished_at": j["finished_at"], "attempts": j["attempts"] or 0,
                "cancel_requested": bool(j["cancel_requested"]),
                "progress": json.loads(j["progress"]) if j["progress"] else None}

    def _submit(raw: bytes, ctype: str, who: str) -> dict[str, Any]:
        data = parse_spec_body(raw, ctype, policy)
        check_policy(data, policy)
        public = json.loads(scrub(json.dumps(data, default=str)))
        try:
            data, _ = confine_spec(data, confiner)
            out = data.get("output") if isinstance(data.get("output"), dict) else {}
            data["output"] = {**{k: v for k, v in out.items() if k != "dir"}, "dir": str(root / "work" / "_pending")}
            spec = PipelineSpec.from_dict(data)
            files = spec.resolve_inputs()
        except SpecError as e:
            raise HTTPException(422, scrub(str(e))) from None
        resolved = spec.model_dump(mode="json")
        ident = {k: v for k, v in resolved.items() if k != "output"}
        ident["output"] = {k: v for k, v in resolved["output"].items() if k != "dir"}
        ident["files"] = [[str(f), f.stat().st_size, f.stat().st_mtime_ns] for f in files]
        work_key = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:32]
        jid = uuid.uuid4().hex[:16]
        now = time.time()
        done = [j for j in cat.jobs_where(jobs.c.work_key == work_key, jobs.c.status == "succeeded")
                if j["snapshot_id"] and cat.snapshot(j["snapshot_id"])]
        if done:  # same spec, same inputs: the snapshot exists already (stored once)
            cat.add_job(id=jid, status="succeeded", name=spec.name, spec=json.dumps(resolved), public_spec=json.dumps(public),
                        work_key=work_key, snapshot_id=done[0]["snapshot_id"], submitted_by=who, submitted_at=now,
                        started_at=now, finished_at=now)
            cat.add_event(jid, "state", {"status": "succeeded", "snapshot_id": done[0]["snapshot_id"],
                                         "reason": f"same spec and inputs as job {done[0]['id']}"})
            return {"id": jid, "status": "succeeded"}
        cat.add_job(id=jid, status="queued", name=spec.name, spec=json.dumps(resolved), public_spec=json.dumps(public),
                    work_key=work_key, submitted_by=who, submitted_at=now)
        cat.add_event(jid, "state", {"status": "queued"})
        supervisor.wake()
        return {"id": jid, "status": "queued"}

    spec_body = {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/SubmittedSpec"}},
            "application/toml": {"schema": {"type": "string", "description": "the same spec as TOML"}},
        },
    }

    @app.post("/v1/jobs", status_code=201, response_model=M.JobCreated, tags=["jobs"],
              openapi_extra={"requestBody": spec_body},
              responses={**AUTH_ERRORS, 413: {**ERR, "description": "body over the limit"},
                         415: {**ERR, "description": "not application/json or application/toml"},
                         422: {**ERR, "description": "the spec is malformed, refused by policy, or names a path "
                               "outside the input roots"}})
    async def submit(request: Request, who: str = SUBMIT) -> JSONResponse:
        """Submit a pipeline spec (JSON or TOML by Content-Type). Its `output.dir` is ignored: the
        service decides where jobs write. Returns the job id; same spec + same inputs as an
        earlier succeeded job returns at once with that snapshot."""
        ctype = mime(request)
        if ctype not in SPEC_TYPES:
            raise HTTPException(415, "send the spec as application/json or application/toml")
        raw = await read_body(request, policy.max_body_bytes)
        out = await run_in_threadpool(_submit, raw, ctype, who)
        return JSONResponse(out, status_code=201)

    @app.get("/v1/jobs", response_model=M.JobPage, tags=["jobs"], responses=AUTH_ERRORS)
    def list_jobs(status: Literal["queued", "running", "succeeded", "failed", "cancelled"] | None = None,
                  limit: Annotated[int, Query(ge=1, le=200)] = 50,
                  offset: Annotated[int, Query(ge=0, le=10**9)] = 0, _: str = READ) -> dict[str, Any]:
        items, total = cat.jobs(status, limit, offset)
        return {"items": [_job_out(j) for j in items], "total": total, "next_offset": _page(offset, limit, total)}

    def _job(job_id: str) -> dict[str, Any]:
        j = cat.job(job_id)
        if j is None:
            raise HTTPException(404, f"no job {job_id!r}")
        return j

    @app.get("/v1/jobs/{job_id}", response_model=M.JobDetail, tags=["jobs"], responses={**AUTH_ERRORS, 404: ERR})
    def get_job(job_id: JobIdParam, _: str = READ) -> dict[str, Any]:
        j = _job(job_id)
        out = _job_out(j)
        out["spec"] = json.loads(j["public_spec"])
        stats = None
        if j["status"] == "succeeded" and j["snapshot_id"]:
            row = cat.snapshot(j["snapshot_id"])
            sp = (root / row["folder"] / "stats.json") if row else None
            if sp is not None and sp.is_file():
                stats = json.loads(scrub(sp.read_text()))
        elif out["progress"]:
            stats = out["progress"].get("stats_so_far")
        out["stats"] = stats
        return out

    @app.post("/v1/jobs/{job_id}/cancel", status_code=202, response_model=M.Job, tags=["jobs"],
              responses={**AUTH_ERRORS, 404: ERR, 409: {**ERR, "description": "the job already finished"}})
    def cancel_job(job_id: JobIdParam, _: str = SUBMIT) -> JSONResponse:
        """Stop a job: a queued one at once, a running one within seconds (its worker is killed).
        Partial output is kept, so submitting the same spec again resumes where it stopped."""
        j = _job(job_id)
        if j["status"] in FINAL:
            raise HTTPException(409, f"job {job_id} already {j['status']}")
        if cat.update_job(job_id, jobs.c.status == "queued", status="cancelled", cancel_requested=1, finished_at=time.time()):
            cat.add_event(job_id, "state", {"status": "cancelled"})
        else:
            cat.update_job(job_id, cancel_requested=1)
            cat.add_event(job_id, "log", {"line": "cancel requested", "level": "info"})
            supervisor.wake()
        return JSONResponse(_job_out(_job(job_id)), status_code=202)

    @app.get("/v1/jobs/{job_id}/logs", response_class=PlainTextResponse, tags=["jobs"],
             responses={**AUTH_ERRORS, 404: ERR})
    def job_logs(job_id: JobIdParam, after: Annotated[int, Query(ge=0, le=2**62)] = 0,
                 limit: Annotated[int, Query(ge=1, le=5000)] = 1000, _: str = READ) -> PlainTextResponse:
        """The job's log lines (no server paths), oldest first; `after` = last event id seen."""
        _job(job_id)
        evs = cat.events(job_id, after=after, limit=limit, kind="log")
        text = "".join(f"{time.strftime('%H:%M:%S', time.gmtime(e['ts']))} {e['data'].get('line', '')}\n" for e in evs)
        return PlainTextResponse(text, headers={"X-Last-Event-Id": str(evs[-1]["id"] if evs else after)})

    @app.get("/v1/jobs/{job_id}/events", tags=["jobs"], responses={
        200: {"description": "server-sent events: `state`, `progress`, `log`, and `end` when the job finished",
              "content": {"text/event-stream": {"schema": {
                  "type": "object", "required": ["data"],
                  "properties": {"id": {"type": "string"}, "data": {"type": "string", "description": "JSON"},
                                 "event": {"type": "string", "enum": ["state", "progress", "log", "end"]}}}}}},
        **AUTH_ERRORS, 404: ERR})
    async def job_events(request: Request, job_id: JobIdParam, _: str = READ) -> Any:
        """Progress and log lines as server-sent events, resumable with `Last-Event-ID`."""
        from sse_starlette.sse import EventSourceResponse

        await run_in_threadpool(_job, job_id)
        try:
            last = int(request.headers.get("last-event-id", "0") or 0)
        except ValueError:
            last = 0
        last = max(0, min(last, 2**62))

        async def stream():  # type: ignore[no-untyped-def]
            nonlocal last
            deadline = time.monotonic() + 3600
            while time.monotonic() < deadline:
                evs = await run_in_threadpool(cat.events, job_id, last, 500)
                for e in evs:
                    last = e["id"]
                    yield {"id": str(e["id"]), "event": e["kind"], "data": json.dumps(e["data"])}
                if not evs:
                    j = await run_in_threadpool(cat.job, job_id)
                    if j is None or j["status"] in FINAL:
                        rest = await run_in_threadpool(cat.events, job_id, last, 500)
                        if not rest:
                            yield {"event": "end", "data": json.dumps({"status": j["status"] if j else "gone"})}
                            return
                        continue
                    if await request.is_disconnected():
                        return
                    await asyncio.sleep(0.3)

        return EventSourceResponse(stream(), ping=15)

    # -- snapshots ---------------------------------------------------------------------------

    def _snap_row(ref: str) -> dict[str, Any]:
        sid = cat.resolve(ref)
        row = cat.snapshot(sid) if sid else None
        if row is None:
            raise HTTPException(404, f"no snapshot {ref!r}")
        return row

    def _snap_out(row: dict[str, Any], alias_map: dict[str, list[str]] | None = None) -> dict[str, Any]:
        out = {k: row[k] for k in ("id", "name", "spec_hash", "code_version", "rows", "bytes", "tokens", "shards",
                                   "parents", "job_id", "created_at")}
        out["aliases"] = (alias_map or {}).get(row["id"], [])
        return out

    def _manifest(row: dict[str, Any]) -> dict[str, Any]:
        p = root / row["folder"] / "manifest.json"
        try:
            return json.loads(scrub(p.read_text()))
        except OSError:
            raise HTTPException(404, f"snapshot {row['id']} has no manifest on disk") from None

    @app.get("/v1/snapshots", response_model=M.SnapshotPage, tags=["snapshots"], responses=AUTH_ERRORS)
    def list_snapshots(name: Annotated[str | None, Query(max_length=200)] = None,
                       parent: Annotated[str | None, Query(max_length=64)] = None,
                       limit: Annotated[int, Query(ge=1, le=200)] = 50,
                       offset: Annotated[int, Query(ge=0, le=10**9)] = 0, _: str = READ) -> dict[str, Any]:
        items, total = cat.snapshots(name, parent, limit, offset)
        amap: dict[str, list[str]] = {}
        for a in cat.aliases():
            amap.setdefault(a["snapshot_id"], []).append(f"{a['name']}@{a['alias']}")
        return {"items": [_snap_out(r, amap) for r in items], "total": total, "next_offset": _page(offset, limit, total)}

    @app.get("/v1/snapshots/{ref}", tags=["snapshots"], responses={
        200: {"description": "the snapshot's manifest (docs/manifest.md)",
              "content": {"application/json": {"schema": {"type": "object"}}}}, **AUTH_ERRORS, 404: ERR})
    def get_snapshot(ref: SnapRef, _: str = READ) -> dict[str, Any]:
        """The manifest; `ref` is a snapshot id or `<name>@<alias>` (e.g. `demo@latest`)."""
        return _manifest(_snap_row(ref))

    @app.get("/v1/snapshots/{ref}/lineage", response_model=M.Lineage, tags=["snapshots"],
             responses={**AUTH_ERRORS, 404: ERR})
    def lineage(ref: SnapRef, _: str = READ) -> dict[str, Any]:
        row = _snap_row(ref)
        m = _manifest(row)
        j = cat.job(row["job_id"]) if row["job_id"] else None
        return {"id": row["id"], "parents": row["parents"], "children": cat.children(row["id"]), "spec": m.get("spec", {}),
                "spec_hash": row["spec_hash"], "code_version": row["code_version"], "job": _job_out(j) if j else None}

    verified: dict[tuple[str, int, int], str] = {}

    @app.get("/v1/snapshots/{ref}/shards/{n}", tags=["snapshots"], responses={
        200: {"description": "the Parquet shard; `ETag` is its sha256", "content": {"application/vnd.apache.parquet": {
            "schema": {"type": "string", "format": "binary"}}}},
        206: {"description": "a byte range of the shard (HTTP Range)", "content": {"application/vnd.apache.parquet": {
            "schema": {"type": "string", "format": "binary"}}}},
        416: {"description": "range not satisfiable"}, **AUTH_ERRORS, 404: ERR,
        503: {**ERR, "description": "the shard on disk failed its sha256 check"}})
    def shard(ref: SnapRef, n: Annotated[int, PathParam(ge=0, le=10**7)], _: str = READ) -> Response:
        row = _snap_row(ref)
        m = _manifest(row)
        shards = m["shards"]
        if not 0 <= n < len(shards):
            raise HTTPException(404, f"snapshot {row['id']} has {len(shards)} shard(s); no shard {n}")
        s = shards[n]
        path = (root / row["folder"] / s["path"]).resolve()
        if not path.is_relative_to((root / row["folder"]).resolve()):
            raise HTTPException(404, "no such shard")
        st = path.stat()
        key = (str(path), st.st_size, st.st_mtime_ns)
        if key not in verified:  # immutable snapshots: verify once per file version
            from pipeline.writers import sha256_file

            verified[key] = sha256_file(path)
        if verified[key] != s["sha256"]:
            raise HTTPException(503, f"shard {n} of snapshot {row['id']} failed its sha256 check; the copy on disk is damaged")
        return FileResponse(path, media_type="application/vnd.apache.parquet", filename=f"{row['id']}-{n:05d}.parquet",
                            headers={"ETag": f'"{s["sha256"]}"', "X-Shard-Sha256": s["sha256"], "X-Shard-Rows": str(s["rows"]),
                                     "Cache-Control": "private, immutable"})

    @app.get("/v1/snapshots/{ref}/report", response_class=HTMLResponse, tags=["snapshots"],
             responses={**AUTH_ERRORS, 404: ERR})
    def report(ref: SnapRef, _: str = READ) -> HTMLResponse:
        """One self-contained HTML page (Plotly bundled, works offline): funnel, histograms,
        dedup clusters, languages, shards, lineage."""
        from pipeline.service.report import render_report

        row = _snap_row(ref)
        lin = {"parents": row["parents"], "children": cat.children(row["id"]), "job_id": row["job_id"]}
        return HTMLResponse(render_report(root / row["folder"], lineage=lin, scrub=scrub))

    @app.delete("/v1/snapshots/{ref}", status_code=204, tags=["snapshots"], responses={
        **AUTH_ERRORS, 404: ERR, 409: {**ERR, "description": "other snapshots name it as a parent"}})
    def delete_snapshot(ref: SnapRef, _: str = ADMIN) -> Response:
        """Admin only. Refused while other snapshots list it as a parent."""
        row = _snap_row(ref)
        kids = cat.children(row["id"])
        if kids:
            raise HTTPException(409, f"snapshot {row['id']} is a parent of {', '.join(kids[:5])}; delete those first")
        cat.delete_snapshot(row["id"])
        folder = root / row["folder"]
        if folder.resolve().is_relative_to((root / "snapshots").resolve()):
            shutil.rmtree(folder, ignore_errors=True)
        return Response(status_code=204)

    # -- names -------------------------------------------------------------------------------

    @app.get("/v1/names", response_model=list[M.Alias], tags=["names"], responses=AUTH_ERRORS)
    def names(name: Annotated[str | None, Query(max_length=200)] = None, _: str = READ) -> list[dict[str, Any]]:
        """Aliases per snapshot name (`latest` follows each name's newest snapshot)."""
        return cat.aliases(name)

    @app.put("/v1/names/{name}/aliases/{alias}", response_model=M.Alias, tags=["names"],
             responses={**AUTH_ERRORS, 404: ERR})
    def set_alias(name: Annotated[str, PathParam(pattern=NAME)], alias: Annotated[str, PathParam(pattern=r"^[A-Za-z0-9_.-]{1,64}$")],
                  body: M.AliasSet, _: str = SUBMIT) -> dict[str, Any]:
        row = _snap_row(body.snapshot_id)
        cat.set_alias(name, alias, row["id"])
        return {"name": name, "alias": alias, "snapshot_id": row["id"]}

    # -- tokens ------------------------------------------------------------------------------

    @app.get("/v1/tokens", response_model=list[M.TokenInfo], tags=["tokens"], responses=AUTH_ERRORS)
    def list_tokens(_: str = ADMIN) -> list[dict[str, Any]]:
        return cat.list_tokens()

    @app.post("/v1/tokens", status_code=201, response_model=M.TokenCreated, tags=["tokens"], responses=AUTH_ERRORS)
    def create_token(body: M.TokenCreate, _: str = ADMIN) -> dict[str, Any]:
        """The token is in this response only; the catalog keeps its sha256."""
        tid, token = cat.create_token(body.name, body.role)
        info = next(t for t in cat.list_tokens() if t["id"] == tid)
        return {**info, "token": token}

    @app.delete("/v1/tokens/{token_id}", status_code=204, tags=["tokens"], responses={**AUTH_ERRORS, 404: ERR})
    def revoke_token(token_id: Annotated[str, PathParam(pattern=r"^[0-9a-f]{12}$")], _: str = ADMIN) -> Response:
        if not cat.revoke_token(token_id):
            raise HTTPException(404, f"no live token {token_id!r}")
        return Response(status_code=204)

    # -- OpenAPI: the spec body schema, one error shape --------------------------------------

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        comps = doc.setdefault("components", {}).setdefault("schemas", {})
        spec_schema = PipelineSpec.model_json_schema(ref_template="#/components/schemas/{model}")
        for k, v in spec_schema.pop("$defs", {}).items():
            comps.setdefault(k, v)
        spec_schema["required"] = [r for r in spec_schema.get("required", []) if r != "output"]
        out = comps.get("OutputSpec")
        if out:
            out = json.loads(json.dumps(out))
            out["required"] = [r for r in out.get("required", []) if r != "dir"]
            if not out["required"]:
                out.pop("required")
            out.setdefault("properties", {}).get("dir", {})["description"] = "ignored: the service decides where jobs write"
            comps["OutputSpec"] = out
        spec_schema["title"] = "SubmittedSpec"
        spec_schema["description"] = ("A pipeline spec (docs/architecture.md; `GET /v1/stages` lists the stage kinds "
                                      "and their fields). Every path must lie under the service's input roots "
                                      "or name a catalog snapshot.")
        comps["SubmittedSpec"] = spec_schema
        comps.pop("HTTPValidationError", None)
        comps.pop("ValidationError", None)
        err_content = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
        for path_item in doc.get("paths", {}).values():
            for op in path_item.values():
                resp = op.get("responses", {})
                if op.get("requestBody"):
                    resp.setdefault("400", {"description": "the body could not be parsed"})
                if "422" in resp or any(p.get("in") in ("path", "query") for p in op.get("parameters", [])) \
                        or "requestBody" in op:
                    resp["422"] = {"description": resp.get("422", {}).get("description", "invalid request"),
                                   "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
                if op.get("requestBody") or op.get("operationId", "").startswith(("submit", "set_alias", "create_token")):
                    resp.setdefault("413", {"description": "body over the limit",
                                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
                    resp.setdefault("415", {"description": "unsupported content type",
                                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
                for code, r in resp.items():  # every error is {"detail": "..."} as JSON
                    if code.isdigit() and int(code) >= 400 and code != "416":
                        r["content"] = err_content
        app.openapi_schema = doc
        return doc

    app.openapi = openapi  # type: ignore[method-assign]
    return app


class _Guard:
    """ASGI middleware: latency metrics; refuses cross-site-sendable and oversized bodies."""

    def __init__(self, app: Any, policy: Policy, metrics: Any):
        self.app, self.policy, self.metrics = app, policy, metrics

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = {"code": 500}

        async def send_wrapped(msg: dict[str, Any]) -> None:
            if msg["type"] == "http.response.start":
                status["code"] = msg["status"]
            await send(msg)

        method = scope["method"]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        refusal: tuple[int, str] | None = None
        qs = scope.get("query_string", b"")
        if "\x00" in scope.get("path", "") or b"%00" in qs or b"\x00" in qs:
            # a NUL in a query value reached the catalog's queries (a 500 on PostgreSQL)
            refusal = (422, "a NUL character (%00) is not allowed in the URL")
        elif method not in ("GET", "HEAD", "OPTIONS"):
            ctype = headers.get("content-type", "").split(";", 1)[0].strip().lower()
            if ctype in SIMPLE_TYPES:
                refusal = (415, f"{ctype} bodies are refused (a browser can send them cross-site without a preflight); "
                                "send application/json or application/toml")
            elif headers.get("sec-fetch-site") == "cross-site":
                refusal = (403, "cross-site requests are refused")
            else:
                cl = headers.get("content-length")
                if cl is not None:
                    try:
                        if int(cl) > self.policy.max_body_bytes:
                            refusal = (413, f"request body is over the service's limit of {self.policy.max_body_bytes:,} bytes")
                    except ValueError:
                        refusal = (400, "Content-Length is not a number")
                elif "chunked" in headers.get("transfer-encoding", "") and scope["path"] != "/v1/jobs":
                    refusal = (411, "send a Content-Length")
        if refusal is not None:
            resp = JSONResponse({"detail": refusal[1]}, status_code=refusal[0])
            await resp(scope, receive, send_wrapped)
        else:
            await self.app(scope, receive, send_wrapped)
        route = scope.get("route")
        template = getattr(route, "path", None) or "unmatched"
        self.metrics.observe(method, template, status["code"], time.perf_counter() - t0)
