"""Direct enqueue on PostgreSQL: `run_background_job` stores the job in the store itself,
in one committed statement, instead of asking a daemon to (`[store] enqueue = "direct"`,
the default with `backend = "postgresql"`).

The store is the queue: a daemon is told nothing. The jobs table's trigger notifies every
node at the commit, and whichever is idle claims the job, as it would one enqueued in an
application's own transaction (`bgjobctl.transactional`). So a host that only submits
(a web server) needs no daemon, and a submit costs one round trip to the database rather
than a hop through a daemon that is busy ending and claiming attempts.

The rows are the daemon's (`bgjobd.submission`: the allow-list, the class's priority,
queue, retries, timeout, unique and limit keys) and so are the statements
(`bgjobd.store.pgsubmit`). Whatever this path cannot settle goes through the daemon as
before, which answers it as it always has: a refusal (so that the daemon logs it as
SECURITY), a batch, a database that does not answer (then the daemon says it is
unavailable, or the spool keeps the job), a store whose schema is not the one this code
writes. A submit whose statement may have committed before its connection broke is sent
to the daemon with the same idempotency key, which finds the job rather than storing it
twice.

One connection per process, made at the first submit, shared by threads under a lock;
after a fork the child makes its own (the parent's is left alone: closing it from the
child would end the parent's session).
"""

from __future__ import annotations

import os
import socket
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any, Final, TypeVar

import psycopg
from psycopg import sql

from bgjobd import submission
from bgjobd.store import pgsubmit
from bgjobd.store.base import KeyTaken, NewJob, UniqueTaken
from bgjobd.store.postgres import GET_JOB, SCHEMA_VERSION, link_defaults
from bgjobd.store.rows import row_to_job
from bgjobs.config import Config
from bgjobs.errors import RefusedError
from bgjobs.model import JobInfo, JobSpec

T = TypeVar("T")
RETRY_SECONDS: Final = 1.0
"""After the database failed to answer, submits go through the daemon this long before
the next try of a connection: a server that is down is not waited for on every call."""
_abandoned: list[psycopg.Connection[Any]] = []
"""Connections inherited over a fork: kept referenced, never closed, since finalizing one
would end the parent's session with it."""


class DirectEnqueue:
    def __init__(self, config: Config) -> None:
        self._config = config
        self._lock = threading.Lock()
        self._db: psycopg.Connection[Any] | None = None
        self._pid = os.getpid()
        self._not_before = 0.0
        # A fork made while another thread held the lock would leave it held in the child.
        mine = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _after_fork(mine))

    def submit(self, spec: JobSpec) -> list[int] | None:
        """The ids of the job's links, stored and committed; None when the daemon must take
        the submit instead (see the module's docstring). Raises what building the rows
        raises other than a refusal (BadParams, TooLarge, UsageError), before any write."""
        if spec.batch:
            return None
        try:
            rows = submission.build(self._config, spec, time.time(), _owner())
        except RefusedError:
            return None
        # Lost, or refused by a store not as this code expects: the daemon decides, and a
        # statement that committed is found there by its key.
        return self._with_connection(lambda db: _store(db, rows))

    def stored(self, job_id: int) -> JobInfo | None:
        """The job as the store holds it (without its attempts' history); None while the
        database cannot be reached (or the job is not there)."""
        row = self._with_connection(lambda db: db.execute(GET_JOB, (job_id,)).fetchone())
        return None if row is None else row_to_job(row)

    def _with_connection(self, work: Callable[[psycopg.Connection[Any]], T]) -> T | None:
        """`work` done on this process's connection (made if need be); None when there is
        none to be had now, or the work failed on it (then it is dropped)."""
        with self._lock:
            if os.getpid() != self._pid:
                self._forget_inherited()
            db = self._connection()
            if db is None:
                return None
            try:
                return work(db)
            except psycopg.Error:
                self._drop()
                return None

    def close(self) -> None:
        with self._lock:
            if os.getpid() == self._pid and self._db is not None:
                self._db.close()
            self._db = None

    def _connection(self) -> psycopg.Connection[Any] | None:
        if self._db is not None and not self._db.closed:
            return self._db
        if time.monotonic() < self._not_before:
            return None
        try:
            self._db = _connect(self._config)
        except psycopg.Error:
            self._db = None
        if self._db is None:
            self._not_before = time.monotonic() + RETRY_SECONDS
        return self._db

    def _drop(self) -> None:
        if self._db is not None:
            self._db.close()
        self._db = None
        self._not_before = time.monotonic() + RETRY_SECONDS

    def forked(self) -> None:
        """In a child just forked: a lock of its own, and no inherited connection."""
        self._lock = threading.Lock()
        self._forget_inherited()

    def _forget_inherited(self) -> None:
        if self._db is not None:
            _abandoned.append(self._db)
        self._db = None
        self._pid = os.getpid()
        self._not_before = 0.0


def _after_fork(writer: weakref.ref[DirectEnqueue]) -> None:
    found = writer()
    if found is not None:
        found.forked()


def _connect(config: Config) -> psycopg.Connection[Any] | None:
    """An autocommit connection whose search_path is the store's schema (with the daemon's
    timeouts: a server that vanished is noticed within seconds); None when that schema
    holds no store of the version this code writes (the daemon will say why). Raises
    psycopg.Error when there is no such schema or the server does not answer."""
    dsn = config.store_dsn or ""
    db = psycopg.connect(
        dsn,
        autocommit=True,
        application_name=f"bgjobs client {socket.gethostname()}:{os.getpid()}",
        **link_defaults(dsn),
    )
    try:
        schema = sql.Identifier(config.settings.store.schema)
        db.execute(sql.SQL("SET search_path TO {}").format(schema))
        row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    except BaseException:
        db.close()
        raise
    if row is None or row[0] != str(SCHEMA_VERSION):
        db.close()
        return None
    return db


def _store(db: psycopg.Connection[Any], rows: list[NewJob]) -> list[int]:
    """A single job in one statement, committed by the server as it answers; a chain's
    links in one transaction. The ids of the job's links, or of the job stored before
    under its key (or its equal unique job)."""
    cursor = db.cursor()

    def execute(query: str, args: Any) -> pgsubmit.Rows:
        cursor.execute(query, args)
        return cursor.fetchall() if cursor.description is not None else []

    try:
        if len(rows) == 1:
            job_id, _ = pgsubmit.run(execute, pgsubmit.add_one(rows[0]))
            return [job_id]
        with db.transaction():
            return pgsubmit.run(execute, pgsubmit.add(rows))
    except KeyTaken as taken:  # sent before: that job is the answer
        return taken.job_ids
    except UniqueTaken as taken:  # an equal unique job waits or runs
        return [taken.job_id]


def _owner() -> str:
    return f"client@{socket.gethostname()}:{os.getpid()}"
