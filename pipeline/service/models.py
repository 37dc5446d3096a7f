"""Response and request models of the REST API (what the OpenAPI document shows)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
Role = Literal["read", "submit", "admin"]


class Error(BaseModel):
    detail: str


class Health(BaseModel):
    status: Literal["ok"]
    version: str


class JobCreated(BaseModel):
    id: str
    status: JobStatus


class Job(BaseModel):
    id: str
    status: JobStatus
    name: str
    snapshot_id: str | None = None
    error: str | None = None
    submitted_at: float
    started_at: float | None = None
    finished_at: float | None = None
    attempts: int
    cancel_requested: bool
    progress: dict[str, Any] | None = None


class JobDetail(Job):
    spec: dict[str, Any]
    stats: dict[str, Any] | None = Field(None, description="per-stage counts (final once the job succeeded)")


class JobPage(BaseModel):
    items: list[Job]
    total: int
    next_offset: int | None


class Snapshot(BaseModel):
    id: str
    name: str
    spec_hash: str
    code_version: str | None = None
    rows: int
    bytes: int
    tokens: int | None = None  # null when the spec has no output.tokenizer
    shards: int
    parents: list[str]
    job_id: str | None = None
    created_at: float
    aliases: list[str] = Field(default_factory=list)


class SnapshotPage(BaseModel):
    items: list[Snapshot]
    total: int
    next_offset: int | None


class Lineage(BaseModel):
    id: str
    parents: list[str]
    children: list[str]
    spec: dict[str, Any]
    spec_hash: str
    code_version: str | None
    job: Job | None


class Alias(BaseModel):
    name: str
    alias: str
    snapshot_id: str


class AliasSet(BaseModel):
    snapshot_id: str = Field(max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$")


class TokenCreate(BaseModel):
    name: str = Field(min_length=1, max_length=200, pattern=r"^[^\x00]+$")  # PostgreSQL text holds no NUL
    role: Role


class TokenInfo(BaseModel):
    id: str
    name: str
    role: Role
    created_at: float
    revoked_at: float | None = None


class TokenCreated(TokenInfo):
    token: str = Field(description="shown once; only its hash is stored")


class StageInfo(BaseModel):
    kind: str
    summary: str
    path_fields: dict[str, str]
    config: dict[str, Any]
