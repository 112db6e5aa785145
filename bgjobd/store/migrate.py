"""Carrying a SQLite store into PostgreSQL (`bgjobctl store migrate`): every job as it is
(its id, state, attempts with their nodes and outcomes, result, error, chain and batch
links, unique and idempotency keys, due time, priority, queue, limit key), its earlier
attempts and output tails, the pauses and the recent starts that rate limits count, in one
PostgreSQL transaction: all or nothing. The identity sequences then continue after the
greatest id the SQLite store ever gave, so no id is given twice.

Refused, changing nothing on either side:
- a source that is not there, not an SQLite database, not a bgjobs store, or of another
  schema version than this bgjobs writes (a daemon of this version upgrades it);
- a source that a daemon uses (a node whose lease runs, or the storage's instance lock
  held beside the file), or that a process is writing (its write lock taken);
- a source with running jobs: a daemon that stopped without ending them (killed) must
  first recover them from the outcome files its workers left on its own disk, which only
  a daemon on that storage can read: start it on the SQLite store and stop it, then
  migrate (a clean stop leaves no running job);
- a target that holds jobs or pauses already: the ids are carried as they are, so they
  cannot join others.

The source is read inside one write transaction of its own (SQLite's write lock, nothing
written): nothing can change it between the checks and the copy. Its nodes are not
carried (they are processes, and gone); state counts are kept by the target's triggers.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

import psycopg
from psycopg import sql

from bgjobd import locks
from bgjobd.store.open import refused
from bgjobd.store.postgres import PostgresStore
from bgjobd.store.sqlite import SCHEMA_VERSION as SQLITE_VERSION
from bgjobs.errors import BgjobsError, ConfigError, StoreUnavailable, UsageError
from bgjobs.model import JobState
from bgjobs.protocol import ErrorCode

TABLES: Final = ("jobs", "attempts", "outputs", "pauses", "starts")
"""In the order their rows go in: attempts and outputs refer to their jobs."""
_ORDER: Final = {"jobs": "id", "attempts": "seq", "outputs": "job_id, round, attempt"}
_OF_A_JOB: Final = ("attempts", "outputs")
_SEQUENCES: Final = (("jobs", "id"), ("attempts", "seq"))
_LOCK_WAIT_MS: Final = 5_000
APPLICATION: Final = "bgjobctl store migrate"


class MigrateRefused(BgjobsError):
    """The stores are not in a state to migrate (a daemon on the source, running jobs, a
    target with jobs already); nothing was changed."""


@dataclass
class Carried:
    """What a migration carried (or, `dry_run`, would have)."""

    source: Path
    schema: str
    jobs: dict[str, int] = field(default_factory=dict)
    """Jobs per state."""
    attempts: int = 0
    """Earlier attempts (each job's final one is described by its own row)."""
    outputs: int = 0
    pauses: int = 0
    starts: int = 0
    next_id: int = 1
    """The id the target gives its next job."""
    dry_run: bool = False


def migrate(source: Path, dsn: str, schema: str, *, dry_run: bool = False) -> Carried:
    """Carry the SQLite store at `source` into the PostgreSQL store (`dsn`, `schema`).
    UsageError for a bad source, ConfigError for a bad DSN, StoreUnavailable when the
    server cannot be reached, MigrateRefused when a store is not ready (see the module)."""
    carried = Carried(source=source, schema=schema, dry_run=dry_run)
    with _source(source) as lite:
        _refuse_if_in_use(lite, source)
        _refuse_running(lite)
        _prepare_target(dsn, schema)
        with _target(dsn, schema) as pg:
            _refuse_if_not_empty(pg, schema)
            copied = {
                table: _copy(lite, pg, table, _columns(lite, pg, schema, table)) for table in TABLES
            }
            carried.attempts, carried.outputs = copied["attempts"], copied["outputs"]
            carried.pauses, carried.starts = copied["pauses"], copied["starts"]
            carried.next_id = _continue_sequences(lite, pg)
            counts = pg.execute("SELECT state, count(*) FROM jobs GROUP BY state").fetchall()
            carried.jobs = {str(state): int(count) for state, count in counts}
            if dry_run:
                pg.rollback()
            else:
                pg.commit()
    return carried


# the source ---------------------------------------------------------------------------------


@contextlib.contextmanager
def _source(path: Path) -> Iterator[sqlite3.Connection]:
    """The SQLite store, its write lock held (nothing is written: the lock only keeps every
    other process from changing it until the copy is done)."""
    if not path.is_file():
        raise UsageError(f"{path}: no such file (the SQLite store to migrate)")
    try:
        # mode=rw: a missing file is an error, never a new empty database.
        lite = sqlite3.connect(
            f"file:{quote(str(path.resolve()))}?mode=rw", uri=True, isolation_level=None
        )
    except sqlite3.Error as exc:
        raise UsageError(f"{path}: cannot open it: {exc}") from None
    try:
        lite.execute(f"PRAGMA busy_timeout = {_LOCK_WAIT_MS}")
        try:
            lite.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise MigrateRefused(
                    f"{path}: another process is writing it (a daemon, run_job.py, a "
                    "drainer); stop them first"
                ) from None
            raise UsageError(f"{path}: {exc}") from None
        except sqlite3.DatabaseError as exc:
            raise UsageError(f"{path}: not an SQLite database ({exc})") from None
        _check_version(lite, path)
        yield lite
    finally:
        with contextlib.suppress(sqlite3.Error):
            lite.execute("ROLLBACK")
        lite.close()


def _check_version(lite: sqlite3.Connection, path: Path) -> None:
    try:
        row = lite.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    except sqlite3.DatabaseError:
        row = None
    if row is None:
        raise UsageError(f"{path}: not a bgjobs store (it has no bgjobs schema version)")
    if int(row[0]) != SQLITE_VERSION:
        raise UsageError(
            f"{path}: a bgjobs store of schema version {row[0]}, and this bgjobs migrates "
            f"version {SQLITE_VERSION}: start this version's bgjobd on it once (it upgrades "
            "the store), stop it, and migrate"
        )


def _refuse_if_in_use(lite: sqlite3.Connection, path: Path) -> None:
    """A daemon on the store: a node whose lease runs (one of this host whose process is
    gone is dead whatever its lease says), or the instance lock of the storage beside it."""
    now = time.time()
    here = socket.gethostname()
    live = [
        f"{name} (pid {pid} on {host})"
        for name, host, pid, lease_until in lite.execute(
            "SELECT name, host, pid, lease_until FROM nodes ORDER BY name"
        )
        if lease_until > now and not (host == here and not locks.pid_alive(pid))
    ]
    if not live and _instance_lock_held(path.parent / "bgjobd.lock"):
        live = [f"the one holding {path.parent / 'bgjobd.lock'}"]
    if live:
        raise MigrateRefused(
            f"{path}: a daemon uses this store: {', '.join(live)}; stop it (every node "
            "sharing the store) first"
        )


def _instance_lock_held(lock: Path) -> bool:
    """Whether a daemon holds its storage's flock (tried shared, so nothing is taken from
    it, and never created)."""
    try:
        fd = os.open(lock, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def _refuse_running(lite: sqlite3.Connection) -> None:
    rows = lite.execute("SELECT id FROM jobs WHERE state = 'running' ORDER BY id").fetchall()
    if rows:
        ids = ", ".join(str(job_id) for (job_id,) in rows[:10])
        more = f" and {len(rows) - 10} more" if len(rows) > 10 else ""
        raise MigrateRefused(
            f"{len(rows)} job(s) are stored as running ({ids}{more}): their daemon stopped "
            "without ending them. Start bgjobd on the SQLite store once and stop it (it "
            "recovers them from what its workers left on its disk), then migrate"
        )


# the target ---------------------------------------------------------------------------------


def _prepare_target(dsn: str, schema: str) -> None:
    """The schema made (or upgraded) as a daemon makes it, in a transaction of its own: an
    empty store either way."""
    with _connection_errors(dsn, schema):
        PostgresStore(dsn, schema, application_name=APPLICATION).close()


@contextlib.contextmanager
def _target(dsn: str, schema: str) -> Iterator[psycopg.Connection[Any]]:
    """A connection in one transaction (the migration's), the store's tables locked
    against every writer (a daemon already on it reads on, and writes after the commit)."""
    with _connection_errors(dsn, schema):
        pg = psycopg.connect(dsn, application_name=APPLICATION)
    try:
        pg.execute(sql.SQL("SET LOCAL search_path TO {}").format(sql.Identifier(schema)))
        pg.execute("LOCK TABLE jobs, attempts, outputs, pauses, starts IN SHARE ROW EXCLUSIVE MODE")
        yield pg
    finally:
        with contextlib.suppress(psycopg.Error):
            pg.rollback()
        pg.close()


@contextlib.contextmanager
def _connection_errors(dsn: str, schema: str) -> Iterator[None]:
    try:
        yield
    except psycopg.errors.InsufficientPrivilege as exc:
        raise refused(schema, exc) from None
    except psycopg.ProgrammingError as exc:
        # libpq could not parse it: say so without echoing it (it may hold a password).
        raise ConfigError(f"store.dsn: not a valid connection string: {exc}") from None
    except psycopg.OperationalError as exc:
        raise StoreUnavailable(
            ErrorCode.STORE_UNAVAILABLE, f"cannot reach the PostgreSQL store: {exc}"
        ) from None


def _refuse_if_not_empty(pg: psycopg.Connection[Any], schema: str) -> None:
    row = pg.execute("SELECT (SELECT count(*) FROM jobs), (SELECT count(*) FROM pauses)").fetchone()
    assert row is not None
    jobs, pauses = int(row[0]), int(row[1])
    if jobs or pauses:
        raise MigrateRefused(
            f"the PostgreSQL store (schema {schema!r}) is not empty: {jobs} job(s), "
            f"{pauses} pause(s); a migration carries the ids as they are, so it goes into "
            "an empty store only (a new schema: [store] schema)"
        )


def _columns(
    lite: sqlite3.Connection, pg: psycopg.Connection[Any], schema: str, table: str
) -> list[str]:
    """Every column of the SQLite table, each of which the PostgreSQL one must have."""
    theirs = [str(row[1]) for row in lite.execute(f"PRAGMA table_info({table})")]
    ours = {
        str(name)
        for (name,) in pg.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = %s AND table_name = %s",
            (schema, table),
        )
    }
    missing = [name for name in theirs if name not in ours]
    if missing:
        raise MigrateRefused(
            f"the PostgreSQL store's {table} lacks column(s) {', '.join(missing)} of the "
            "SQLite store's: upgrade bgjobs"
        )
    return theirs


def _copy(
    lite: sqlite3.Connection,
    pg: psycopg.Connection[Any],
    table: str,
    columns: list[str],
) -> int:
    """The table's rows copied (those of jobs that are there); how many."""
    listed = ", ".join(columns)
    where = " WHERE job_id IN (SELECT id FROM jobs)" if table in _OF_A_JOB else ""
    order = f" ORDER BY {_ORDER[table]}" if table in _ORDER else ""
    rows = lite.execute(f"SELECT {listed} FROM {table}{where}{order}")
    copied = 0
    with pg.cursor() as cursor, cursor.copy(f"COPY {table} ({listed}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)
            copied += 1
    return copied


def _continue_sequences(lite: sqlite3.Connection, pg: psycopg.Connection[Any]) -> int:
    """Each identity sequence set past the greatest id the SQLite store ever gave (its
    AUTOINCREMENT counter remembers pruned ones too) or the target's own; returns the next
    job id."""
    next_id = 1
    for table, column in _SEQUENCES:
        found = lite.execute(f"SELECT max({column}) FROM {table}").fetchone()
        greatest = int(found[0]) if found and found[0] is not None else 0
        counter = lite.execute("SELECT seq FROM sqlite_sequence WHERE name = ?", (table,))
        remembered = counter.fetchone()
        if remembered is not None:
            greatest = max(greatest, int(remembered[0]))
        # The greater of the two; none given yet (0): the sequence starts at 1.
        row = pg.execute(
            "SELECT setval(s, greatest(given, 1), given > 0), given FROM ("
            "SELECT s, greatest(%s, coalesce(pg_sequence_last_value(s), 0)) AS given FROM "
            "(SELECT pg_get_serial_sequence(%s, %s)::regclass AS s) AS named) AS q",
            (greatest, table, column),
        ).fetchone()
        assert row is not None
        if table == "jobs":
            next_id = int(row[1]) + 1
    return next_id


def state_order(counts: dict[str, int]) -> list[tuple[str, int]]:
    """Counts per state in the order of the job's life (waiting ... cancelled)."""
    order = [state.value for state in JobState]
    return sorted(counts.items(), key=lambda item: order.index(item[0]) if item[0] in order else 99)
