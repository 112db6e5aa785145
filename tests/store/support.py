"""What the store's test modules share: the backends under test and small builders of jobs,
attempt ends and nodes.

PostgreSQL: the real server named by `$BGJOBS_TEST_PG_DSN` (default: trust auth on
127.0.0.1:5432, database `test`), each test's stores in a schema of its own, which
`drop_schemas` removes after the test."""

from __future__ import annotations

import functools
import hashlib
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import psycopg
from psycopg import sql

from bgjobd.store.base import FinishedAttempt, NewJob, Store
from bgjobd.store.postgres import PostgresStore
from bgjobd.store.sqlite import SQLiteStore
from bgjobs.model import ErrorInfo, JobState, NodeInfo, Outcome, Priority
from tests.support.waiting import wait_for

PG_DSN = os.environ.get("BGJOBS_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
StoreAddress = tuple[str, str]
"""A backend's name and where its store is: the SQLite file, or the PostgreSQL schema. What
racer processes are given to open the test's store."""
_SCHEMAS_MADE: set[str] = set()
"""The PostgreSQL schemas named or opened by this process since the last `drop_schemas`."""


def address_of(backend: str, tmp: Path) -> StoreAddress:
    """The store of a test (its temporary directory): a file in it, or a schema named by
    it, so that every store a test opens there is the same."""
    if backend == "sqlite":
        return backend, str(tmp / "bgjobs.db")
    schema = "bgjobs_test_" + hashlib.sha256(str(tmp).encode()).hexdigest()[:20]
    # Dropped after the test even when only its racer processes open it.
    _SCHEMAS_MADE.add(schema)
    return backend, schema


def open_store(address: StoreAddress) -> Store:
    backend, where = address
    if backend == "sqlite":
        return SQLiteStore(Path(where))
    _SCHEMAS_MADE.add(where)
    return PostgresStore(PG_DSN, where, application_name=_application(where))


def _application(schema: str) -> str:
    """The connections' name: what tells a test's leaked connections."""
    return f"tests:{schema}"


Backend = Callable[[Path], Store]
BACKENDS: dict[str, Backend] = {
    name: functools.partial(lambda name, tmp: open_store(address_of(name, tmp)), name)
    for name in ("sqlite", "postgresql")
}


@functools.cache
def postgres_unavailable() -> str | None:
    """Why the test server cannot be used (None: it can)."""
    try:
        with psycopg.connect(PG_DSN, connect_timeout=5) as db:
            db.execute("SELECT 1")
    except psycopg.Error as exc:
        return f"no PostgreSQL at {PG_DSN}: {exc}"
    return None


def require_postgres() -> None:
    """Skip the test when the test server does not answer, except under CI (`CI=true`),
    where that fails it."""
    import pytest

    why = postgres_unavailable()
    if why is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(why)
    pytest.skip(why)


def drop_schemas() -> None:
    """Drop the schemas this process opened, once their connections are gone: a test
    leaves no schema and no connection behind (fails if one is still open)."""
    if not _SCHEMAS_MADE:
        return
    with psycopg.connect(PG_DSN, autocommit=True) as db:
        for schema in sorted(_SCHEMAS_MADE):
            wait_for(
                lambda schema=schema: _connections(db, schema) == 0,  # type: ignore[misc]
                timeout=10,
                what=f"the connections to schema {schema} to close",
            )
            db.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
    _SCHEMAS_MADE.clear()


def _connections(db: psycopg.Connection[tuple[object, ...]], schema: str) -> int:
    row = db.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
        (_application(schema),),
    ).fetchone()
    return 0 if row is None else int(str(row[0]))


def new_job(
    class_name: str = "Echo",
    *,
    state: JobState = JobState.QUEUED,
    run_at: float | None = None,
    priority: Priority = Priority.MEDIUM,
    params: list[object] | None = None,
    **extra: object,
) -> NewJob:
    now = time.time()
    return NewJob(
        class_name=class_name,
        method="handle",
        params=params if params is not None else ["a", 1],
        priority=priority,
        state=state,
        run_at=run_at if run_at is not None else now,
        max_attempts=3,
        timeout=30.0,
        created_at=now,
        owner="test",
        **extra,  # type: ignore[arg-type]
    )


def attempt(
    number: int,
    outcome: Outcome,
    error: ErrorInfo | None = None,
    *,
    owner: str | None = None,
    round_number: int | None = None,
) -> FinishedAttempt:
    """An attempt's end; with `owner`, recorded only while that runner holds the attempt
    (of that round, if given)."""
    return FinishedAttempt(number, outcome, time.time(), 0.01, error, owner, round_number)


def node(
    name: str, *, pid: int = 100, now: float | None = None, lease: float = 30.0, busy: int = 0
) -> NodeInfo:
    """A node that beats at `now` (default: the present) and holds its lease `lease` seconds
    more (a negative `lease`: a node already dead)."""
    beat = time.time() if now is None else now
    return NodeInfo(
        name=name,
        host="host-a",
        pid=pid,
        address=f"/run/{name}.sock",
        started_at=datetime.fromtimestamp(beat - 60, UTC),
        heartbeat_at=datetime.fromtimestamp(beat, UTC),
        lease_until=datetime.fromtimestamp(beat + lease, UTC),
        workers_busy=busy,
        workers_total=4,
    )


def renewed(of: NodeInfo, now: float, *, lease: float = 30.0, busy: int = 0) -> NodeInfo:
    """The same node (process and start) beating again at `now`."""
    return msgspec.structs.replace(
        of,
        heartbeat_at=datetime.fromtimestamp(now, UTC),
        lease_until=datetime.fromtimestamp(now + lease, UTC),
        workers_busy=busy,
    )
