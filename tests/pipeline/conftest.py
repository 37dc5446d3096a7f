"""Fixtures for the service tests: the catalog backends (SQLite; a real PostgreSQL started here)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    from tests.pipeline.svc_util import private_postgres

    with private_postgres() as url:
        yield url


def fresh_pg_db(server_url: str) -> str:
    from sqlalchemy import create_engine, text

    name = "t_" + uuid.uuid4().hex[:12]
    eng = create_engine(server_url.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT")
    with eng.connect() as c:
        c.execute(text(f'create database "{name}"'))
    eng.dispose()
    return server_url.rsplit("/", 1)[0] + "/" + name


@pytest.fixture(params=["sqlite", "postgresql"])
def catalog_url(request: pytest.FixtureRequest) -> str | None:
    """None = the default SQLite file in the service root; else a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return None
    return fresh_pg_db(request.getfixturevalue("pg_server"))
