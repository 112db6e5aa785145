"""Transactional enqueue on PostgreSQL: a job stored by the application's own transaction,
so that it exists exactly when that transaction commits (the outbox that makes "saved the
order but lost its email job" impossible).

    import psycopg
    from bgjobctl import enqueue_in

    with psycopg.connect(DSN) as conn, conn.transaction():
        conn.execute("INSERT INTO orders (id, title) VALUES (%s, %s)", (7, "Book"))
        job_id = enqueue_in(conn, "OrderPlacedService", "handle", [7])

The job is checked and built exactly as the daemon builds a submit (`bgjobd.submission`:
the allow-list, the class's priority, queue, retries, timeout, `unique`, `limit_by`), and
inserted with the store's own statements (`bgjobd.store.pgsubmit`) into the schema the
configuration names. The daemons learn of it at the commit: the jobs table's trigger
sends its NOTIFY, which PostgreSQL delivers only then (and never for a rollback).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

import msgspec
import psycopg
from psycopg.pq import TransactionStatus
from psycopg.rows import tuple_row

from bgjobctl.library import LinkSpec, discovery_key, make_spec
from bgjobd import submission
from bgjobd.store import pgsubmit
from bgjobd.store.base import KeyTaken, NewJob, UniqueTaken
from bgjobs.config import Config, load_config
from bgjobs.errors import ConfigError
from bgjobs.model import Priority

_ENTER: Final = (
    "SELECT current_setting('search_path'), set_config('search_path', %s, true), to_regclass(%s)"
)
"""The store's schema made the transaction's search_path (its tables are named bare, and
so are those its triggers write), the application's own kept to put back; and whether
the store's tables are there."""
_LEAVE: Final = "SELECT set_config('search_path', %s, true)"

_configs: dict[tuple[str | None, ...], Config] = {}
_configs_lock = threading.Lock()


def enqueue_in(
    connection: psycopg.Connection[Any],
    class_name: str,
    method: str,
    params: Sequence[Any] = (),
    delay: float = 0,
    *,
    priority: Priority | str | None = None,
    at: datetime | None = None,
    then: Sequence[LinkSpec] = (),
    key: str | None = None,
    queue: str | None = None,
    config: str | Config | None = None,
) -> int:
    """Store the job (and its chain, `then`) in `connection`'s current transaction, and
    return its id; it exists, and runs, once that transaction commits, and never if it
    rolls back. On a connection in autocommit mode outside a transaction, the job is
    committed at once, like any other write on it.

    Arguments as `run_background_job`'s; `config` is the configuration (a path, or a
    loaded `Config`; default found as the library finds it), whose `[store]` must be the
    PostgreSQL store the daemons use. Raises what a submit to the daemon raises, before
    anything is written: RefusedError (not allow-listed), BadParams, TooLarge, UsageError.
    A job whose idempotency `key` is stored already, or an equal `unique` job that is
    still waiting or running, is not stored twice: its id is returned. (An equal unique
    job that another transaction has stored but not committed yet holds the unique key:
    this call waits for that transaction to end.)"""
    rows = _rows(
        config,
        class_name,
        method,
        params,
        delay,
        priority=priority,
        at=at,
        then=then,
        key=key,
        queue=queue,
    )
    steps = _steps(_schema_of(config), rows)
    own = connection.autocommit and connection.info.transaction_status == TransactionStatus.IDLE
    with connection.cursor(row_factory=tuple_row) as cursor:

        def execute(query: str, args: Sequence[Any]) -> pgsubmit.Rows:
            if connection.pgconn.pipeline_status:
                # The application's pipeline: each statement's result is needed before the
                # next, so each is synced.
                with connection.pipeline() as pipeline:
                    cursor.execute(query, args)
                    pipeline.sync()
            else:
                cursor.execute(query, args)
            return cursor.fetchall() if cursor.description is not None else []

        if own:
            with connection.transaction():
                return pgsubmit.run(execute, steps)
        return pgsubmit.run(execute, steps)


async def enqueue_in_async(
    connection: psycopg.AsyncConnection[Any],
    class_name: str,
    method: str,
    params: Sequence[Any] = (),
    delay: float = 0,
    *,
    priority: Priority | str | None = None,
    at: datetime | None = None,
    then: Sequence[LinkSpec] = (),
    key: str | None = None,
    queue: str | None = None,
    config: str | Config | None = None,
) -> int:
    """`enqueue_in`, on an asyncio connection (`psycopg.AsyncConnection`)."""
    rows = _rows(
        config,
        class_name,
        method,
        params,
        delay,
        priority=priority,
        at=at,
        then=then,
        key=key,
        queue=queue,
    )
    steps = _steps(_schema_of(config), rows)
    own = connection.autocommit and connection.info.transaction_status == TransactionStatus.IDLE
    async with connection.cursor(row_factory=tuple_row) as cursor:

        async def execute(query: str, args: Sequence[Any]) -> pgsubmit.Rows:
            if connection.pgconn.pipeline_status:
                async with connection.pipeline() as pipeline:
                    await cursor.execute(query, args)
                    await pipeline.sync()
            else:
                await cursor.execute(query, args)
            return await cursor.fetchall() if cursor.description is not None else []

        if own:
            async with connection.transaction():
                return await pgsubmit.run_async(execute, steps)
        return await pgsubmit.run_async(execute, steps)


def _steps(schema: str, rows: list[NewJob]) -> pgsubmit.Steps[int]:
    """The statements of one enqueue: into the store's schema, the job stored (or the equal
    one found), and back to the application's search_path."""
    quoted = '"' + schema.replace('"', '""') + '"'
    entered = yield (_ENTER, (quoted, f"{quoted}.jobs"))
    previous, _, table = entered[0]
    if table is None:
        yield (_LEAVE, (previous,))
        raise ConfigError(
            f"no bgjobs store in schema {schema!r} of this database: start bgjobd once "
            'with [store] backend = "postgresql" and this schema (it creates the tables)'
        )
    unique = rows[0].unique_key
    live = (yield from pgsubmit.find_live_unique(unique)) if unique is not None else None
    if live is not None:
        yield (_LEAVE, (previous,))
        return live
    try:
        ids = yield from pgsubmit.add(rows)
    except KeyTaken as taken:
        ids = taken.job_ids
    except UniqueTaken as taken:
        ids = [taken.job_id]
    except Exception:
        if pgsubmit.may_collide(rows):
            # Undone to its savepoint: the application's transaction goes on, in its own
            # search_path. (Without one, a failed statement has failed the transaction.)
            yield (_LEAVE, (previous,))
        raise
    yield (_LEAVE, (previous,))
    return ids[0]


def _rows(
    config: str | Config | None,
    class_name: str,
    method: str,
    params: Sequence[Any],
    delay: float,
    *,
    priority: Priority | str | None,
    at: datetime | None,
    then: Sequence[LinkSpec],
    key: str | None,
    queue: str | None,
) -> list[NewJob]:
    """The rows a submit of this job to the daemon would store; its refusals."""
    spec = make_spec(
        class_name,
        method,
        params,
        delay,
        priority=priority,
        at=at,
        then=then,
        key=key,
        queue=queue,
    )
    if key is None:
        # No resend can repeat a transaction's insert: a random key would only cost the
        # savepoint that guards a key's unique index.
        spec = msgspec.structs.replace(spec, key=None)
    return submission.build(_config(config), spec, time.time(), _owner())


def _owner() -> str:
    return f"enqueue_in@{socket.gethostname()}:{os.getpid()}"


def _schema_of(config: str | Config | None) -> str:
    return _config(config).settings.store.schema


def _config(config: str | Config | None) -> Config:
    """The configuration (read once per place it is found), which must name PostgreSQL."""
    if isinstance(config, Config):
        loaded = config
    else:
        found = discovery_key(config, None)
        with _configs_lock:
            loaded = _configs.get(found) or _configs.setdefault(found, load_config(config))
    backend = loaded.settings.store.backend
    if backend != "postgresql":
        where = loaded.path or "the built-in defaults"
        raise ConfigError(
            f'enqueue_in stores jobs in PostgreSQL, and {where} has [store] backend = "{backend}"'
            ': submit with run_background_job instead, or configure backend = "postgresql"'
        )
    return loaded
