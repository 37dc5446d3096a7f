"""The catalog: jobs, their events, snapshots, lineage, names and tokens (SQLAlchemy Core).

SQLite (``<root>/catalog.sqlite``, WAL) by default, PostgreSQL by URL
(``postgresql://user@host:port/db``; driver psycopg 3). The API process and the job worker
processes share nothing else, so a restart of either side loses nothing. Every statement is
parameterized; column names come from this module, never from a request.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    create_engine,
    delete,
    event,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

ROLES = ("read", "submit", "admin")
STATES = ("queued", "running", "succeeded", "failed", "cancelled")
FINAL = ("succeeded", "failed", "cancelled")

metadata = MetaData()

jobs = Table(
    "jobs", metadata,
    Column("id", String(32), primary_key=True),
    Column("status", String(16), nullable=False, index=True),
    Column("name", String(200), nullable=False),
    Column("spec", Text, nullable=False),         # resolved spec (server paths): never returned
    Column("public_spec", Text, nullable=False),  # what the client sent, as parsed
    Column("work_key", String(64), nullable=False, index=True),
    Column("snapshot_id", String(64)),
    Column("error", Text),
    Column("progress", Text),
    Column("submitted_by", String(200)),
    Column("submitted_at", Float, nullable=False),
    Column("started_at", Float),
    Column("finished_at", Float),
    Column("heartbeat_at", Float),
    Column("pid", Integer),
    Column("attempts", Integer, nullable=False, default=0),
    Column("cancel_requested", Integer, nullable=False, default=0),
    Column("cleaned", Integer, nullable=False, default=0),
)

events = Table(
    "events", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("job_id", String(32), nullable=False, index=True),
    Column("ts", Float, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("data", Text, nullable=False),
)

snapshots = Table(
    "snapshots", metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(200), nullable=False, index=True),
    Column("folder", String(300), nullable=False),  # relative to the service root
    Column("spec_hash", String(64), nullable=False),
    Column("code_version", String(32)),
    Column("rows", BigInteger, nullable=False),
    Column("bytes", BigInteger, nullable=False),
    Column("tokens", BigInteger, nullable=True),  # null: no output.tokenizer (manifest.md)
    Column("shards", Integer, nullable=False),
    Column("job_id", String(32)),
    Column("created_at", Float, nullable=False),
)

parents = Table(
    "snapshot_parents", metadata,
    Column("child", String(64), nullable=False),
    Column("parent", String(64), nullable=False),
    PrimaryKeyConstraint("child", "parent"),
)

aliases = Table(
    "aliases", metadata,
    Column("name", String(200), nullable=False),
    Column("alias", String(64), nullable=False),
    Column("snapshot_id", String(64), nullable=False),
    Column("updated_at", Float, nullable=False),
    PrimaryKeyConstraint("name", "alias"),
)

tokens = Table(
    "tokens", metadata,
    Column("id", String(16), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("role", String(8), nullable=False),
    Column("hash", String(64), nullable=False, unique=True),
    Column("created_at", Float, nullable=False),
    Column("revoked_at", Float),
)

stage_docs = Table(
    "stage_docs", metadata,
    Column("kind", String(64), primary_key=True),
    Column("docs_in", BigInteger, nullable=False),
    Column("docs_out", BigInteger, nullable=False),
)


def catalog_url(root: str | Path, url: str | None = None) -> str:
    if url:
        if url.startswith("postgresql://"):
            return "postgresql+psycopg://" + url.removeprefix("postgresql://")
        return url
    return f"sqlite:///{Path(root).resolve() / 'catalog.sqlite'}"


def hash_token(token: str) -> str:
    """Tokens are 256-bit random strings, so one sha256 is a safe stored form."""
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


class Catalog:
    def __init__(self, url: str):
        self.url = url
        kw: dict[str, Any] = {"future": True}
        if url.startswith("sqlite"):
            kw["connect_args"] = {"timeout": 30, "check_same_thread": False}
        else:
            kw["pool_pre_ping"] = True
        self.engine: Engine = create_engine(url, **kw)
        if url.startswith("sqlite"):
            @event.listens_for(self.engine, "connect")
            def _pragmas(dbapi_conn: Any, _rec: Any) -> None:
                cur = dbapi_conn.cursor()
                cur.execute("pragma journal_mode=wal")
                cur.execute("pragma busy_timeout=30000")
                cur.execute("pragma synchronous=normal")
                cur.close()
        metadata.create_all(self.engine)

    @contextmanager
    def tx(self) -> Iterator[Connection]:
        with self.engine.begin() as c:
            yield c

    def dispose(self) -> None:
        self.engine.dispose()

    # -- tokens ------------------------------------------------------------------------------

    def create_token(self, name: str, role: str) -> tuple[str, str]:
        if role not in ROLES:
            raise ValueError(f"role {role!r}: expected one of {', '.join(ROLES)}")
        token = "assay_" + secrets.token_urlsafe(32)
        tid = secrets.token_hex(6)
        with self.tx() as c:
            c.execute(insert(tokens).values(id=tid, name=name[:200], role=role, hash=hash_token(token),
                                            created_at=time.time()))
        return tid, token

    def token_role(self, token: str) -> tuple[str, str] | None:
        """(role, token name) of a live token, or None."""
        with self.engine.connect() as c:
            row = c.execute(select(tokens.c.role, tokens.c.name).where(
                tokens.c.hash == hash_token(token), tokens.c.revoked_at.is_(None))).first()
        return (row[0], row[1]) if row else None

    def list_tokens(self) -> list[dict[str, Any]]:
        with self.engine.connect() as c:
            rows = c.execute(select(tokens.c.id, tokens.c.name, tokens.c.role, tokens.c.created_at,
                                    tokens.c.revoked_at).order_by(tokens.c.created_at)).all()
        return [dict(r._mapping) for r in rows]

    def revoke_token(self, ident: str) -> int:
        with self.tx() as c:
            res = c.execute(update(tokens).where((tokens.c.id == ident) | (tokens.c.name == ident),
                                                 tokens.c.revoked_at.is_(None)).values(revoked_at=time.time()))
        return int(res.rowcount or 0)

    # -- jobs --------------------------------------------------------------------------------

    def add_job(self, **values: Any) -> None:
        with self.tx() as c:
            c.execute(insert(jobs).values(attempts=0, cancel_requested=0, cleaned=0, **values))

    def job(self, job_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as c:
            row = c.execute(select(jobs).where(jobs.c.id == job_id)).first()
        return dict(row._mapping) if row else None

    def jobs(self, status: str | None = None, limit: int = 50, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
        q = select(jobs)
        n = select(func.count()).select_from(jobs)
        if status:
            q = q.where(jobs.c.status == status)
            n = n.where(jobs.c.status == status)
        with self.engine.connect() as c:
            rows = c.execute(q.order_by(jobs.c.submitted_at.desc(), jobs.c.id).limit(limit).offset(offset)).all()
            total = int(c.execute(n).scalar_one())
        return [dict(r._mapping) for r in rows], total

    def jobs_where(self, *conds: Any) -> list[dict[str, Any]]:
        with self.engine.connect() as c:
            rows = c.execute(select(jobs).where(*conds).order_by(jobs.c.submitted_at, jobs.c.id)).all()
        return [dict(r._mapping) for r in rows]

    def update_job(self, job_id: str, *conds: Any, **values: Any) -> int:
        with self.tx() as c:
            res = c.execute(update(jobs).where(jobs.c.id == job_id, *conds).values(**values))
        return int(res.rowcount or 0)

    def job_counts(self) -> dict[str, int]:
        with self.engine.connect() as c:
            rows = c.execute(select(jobs.c.status, func.count()).group_by(jobs.c.status)).all()
        out = dict.fromkeys(STATES, 0)
        out.update({r[0]: int(r[1]) for r in rows})
        return out

    # -- events ------------------------------------------------------------------------------

    def add_event(self, job_id: str, kind: str, data: dict[str, Any]) -> None:
        with self.tx() as c:
            c.execute(insert(events).values(job_id=job_id, ts=time.time(), kind=kind,
                                            data=json.dumps(data, default=str)[:65536]))

    def events(self, job_id: str, after: int = 0, limit: int = 500, kind: str | None = None) -> list[dict[str, Any]]:
        q = select(events).where(events.c.job_id == job_id, events.c.id > after)
        if kind:
            q = q.where(events.c.kind == kind)
        with self.engine.connect() as c:
            rows = c.execute(q.order_by(events.c.id).limit(limit)).all()
        return [{**dict(r._mapping), "data": json.loads(r.data)} for r in rows]

    # -- snapshots ---------------------------------------------------------------------------

    def add_snapshot(self, manifest: dict[str, Any], folder: str, job_id: str | None,
                     extra_parents: list[str] | None = None) -> bool:
        """Record a snapshot (once: the id is its content hash). True when it was new.

        Parents: the manifest's (what stages declared they read) plus ``extra_parents`` (the
        catalog snapshots the job read as input)."""
        t = manifest["totals"]
        sid = manifest["snapshot_id"]
        try:
            with self.tx() as c:
                c.execute(insert(snapshots).values(
                    id=sid, name=str(manifest.get("name", ""))[:200], folder=folder,
                    spec_hash=manifest["spec_hash"], code_version=manifest.get("code_version"),
                    rows=t["rows"], bytes=t["bytes"], tokens=t.get("tokens"), shards=t["shards"],
                    job_id=job_id, created_at=time.time()))
                for p in sorted({*(manifest.get("parents", []) or []), *(extra_parents or [])} - {sid}):
                    c.execute(insert(parents).values(child=sid, parent=str(p)))
        except IntegrityError:
            if self.snapshot(sid) is None:  # not a duplicate id: a real error, never "stored once"
                raise
            new = False
        else:
            new = True
        self.set_alias(str(manifest.get("name", ""))[:200], "latest", sid)
        return new

    def add_stage_docs(self, stats: dict[str, Any]) -> None:
        with self.tx() as c:
            for st in stats.get("stages", []):
                kind = str(st.get("kind", ""))[:64]
                row = c.execute(select(stage_docs).where(stage_docs.c.kind == kind)).first()
                if row is None:
                    c.execute(insert(stage_docs).values(kind=kind, docs_in=int(st["docs_in"]), docs_out=int(st["docs_out"])))
                else:
                    c.execute(update(stage_docs).where(stage_docs.c.kind == kind).values(
                        docs_in=stage_docs.c.docs_in + int(st["docs_in"]), docs_out=stage_docs.c.docs_out + int(st["docs_out"])))

    def stage_docs(self) -> list[dict[str, Any]]:
        with self.engine.connect() as c:
            return [dict(r._mapping) for r in c.execute(select(stage_docs).order_by(stage_docs.c.kind)).all()]

    def snapshot(self, sid: str) -> dict[str, Any] | None:
        with self.engine.connect() as c:
            row = c.execute(select(snapshots).where(snapshots.c.id == sid)).first()
            if row is None:
                return None
            ps = [r[0] for r in c.execute(select(parents.c.parent).where(parents.c.child == sid).order_by(parents.c.parent))]
        return {**dict(row._mapping), "parents": ps}

    def resolve(self, ref: str) -> str | None:
        """A snapshot id from ``<id>`` or ``<name>@<alias>``."""
        if "@" in ref:
            name, alias = ref.rsplit("@", 1)
            with self.engine.connect() as c:
                row = c.execute(select(aliases.c.snapshot_id).where(aliases.c.name == name, aliases.c.alias == alias)).first()
            return row[0] if row else None
        return ref if self.snapshot(ref) is not None else None

    def snapshots(self, name: str | None = None, parent: str | None = None, limit: int = 50,
                  offset: int = 0) -> tuple[list[dict[str, Any]], int]:
        q = select(snapshots)
        n = select(func.count()).select_from(snapshots)
        if name:
            q = q.where(snapshots.c.name == name)
            n = n.where(snapshots.c.name == name)
        if parent:
            sub = select(parents.c.child).where(parents.c.parent == parent)
            q = q.where(snapshots.c.id.in_(sub))
            n = n.where(snapshots.c.id.in_(sub))
        with self.engine.connect() as c:
            rows = c.execute(q.order_by(snapshots.c.created_at.desc(), snapshots.c.id).limit(limit).offset(offset)).all()
            total = int(c.execute(n).scalar_one())
            out = []
            for r in rows:
                ps = [x[0] for x in c.execute(select(parents.c.parent).where(parents.c.child == r.id).order_by(parents.c.parent))]
                out.append({**dict(r._mapping), "parents": ps})
        return out, total

    def children(self, sid: str) -> list[str]:
        with self.engine.connect() as c:
            return [r[0] for r in c.execute(select(parents.c.child).where(parents.c.parent == sid).order_by(parents.c.child))]

    def delete_snapshot(self, sid: str) -> bool:
        with self.tx() as c:
            res = c.execute(delete(snapshots).where(snapshots.c.id == sid))
            c.execute(delete(parents).where(parents.c.child == sid))
            c.execute(delete(aliases).where(aliases.c.snapshot_id == sid))
        return bool(res.rowcount)

    # -- names -------------------------------------------------------------------------------

    def set_alias(self, name: str, alias: str, sid: str) -> None:
        with self.tx() as c:
            res = c.execute(update(aliases).where(aliases.c.name == name, aliases.c.alias == alias).values(
                snapshot_id=sid, updated_at=time.time()))
            if not res.rowcount:
                try:
                    with c.begin_nested():
                        c.execute(insert(aliases).values(name=name, alias=alias, snapshot_id=sid, updated_at=time.time()))
                except IntegrityError:
                    c.execute(update(aliases).where(aliases.c.name == name, aliases.c.alias == alias).values(
                        snapshot_id=sid, updated_at=time.time()))

    def aliases(self, name: str | None = None) -> list[dict[str, Any]]:
        q = select(aliases.c.name, aliases.c.alias, aliases.c.snapshot_id)
        if name:
            q = q.where(aliases.c.name == name)
        with self.engine.connect() as c:
            return [dict(r._mapping) for r in c.execute(q.order_by(aliases.c.name, aliases.c.alias).limit(1000))]
