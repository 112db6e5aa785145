from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from bgjobd.store.base import Store
from tests.store.support import (
    BACKENDS,
    PG_DSN,
    Backend,
    drop_schemas,
    postgres_unavailable,
    require_postgres,
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "sqlite_only(reason): a test of SQLite itself, run on no other backend"
    )


@pytest.fixture(params=sorted(BACKENDS))
def backend_name(request: pytest.FixtureRequest) -> str:
    """Each backend in turn. PostgreSQL's tests are skipped when its server does not answer,
    except under CI (`CI=true`), where that fails them."""
    name = str(request.param)
    only = request.node.get_closest_marker("sqlite_only")
    if only is not None and name != "sqlite":
        pytest.skip(f"SQLite only: {only.args[0]}")
    if name == "postgresql" and (why := postgres_unavailable()) is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(why)
        pytest.skip(why)
    return name


@pytest.fixture
def backend(backend_name: str) -> Backend:
    return BACKENDS[backend_name]


@pytest.fixture(autouse=True)
def _no_schema_left() -> Iterator[None]:
    """Set up before the stores and so torn down after them: their schemas go."""
    yield
    drop_schemas()


@pytest.fixture
def store(backend: Backend, tmp_path: Path) -> Iterator[Store]:
    """A fresh store of each backend."""
    opened = backend(tmp_path)
    yield opened
    opened.close()


@pytest.fixture
def peer(backend: Backend, tmp_path: Path, store: Store) -> Iterator[Store]:
    """A second connection to `store`, as another process sharing it would open."""
    opened = backend(tmp_path)
    yield opened
    opened.close()


@pytest.fixture
def own_role() -> Iterator[str]:
    """A login role of this test's own: like any new role (PostgreSQL 15 on), it may not
    create schemas in the database. Dropped with what it owns after the test."""
    require_postgres()
    name = f"bgjobs_test_role_{uuid.uuid4().hex[:10]}"
    role = sql.Identifier(name)
    with psycopg.connect(PG_DSN, autocommit=True) as db:
        db.execute(sql.SQL("CREATE ROLE {} LOGIN").format(role))
    yield name
    with psycopg.connect(PG_DSN, autocommit=True) as db:
        db.execute(sql.SQL("DROP OWNED BY {} CASCADE").format(role))
        db.execute(sql.SQL("DROP ROLE {}").format(role))
