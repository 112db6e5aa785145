"""The shared store: a PostgreSQL schema (default `bgjobs`) that nodes on several hosts share.

One psycopg 3 connection per store, in autocommit mode: reads outside a write see the
latest commits (as SQLite's do), and the first write of a transaction sends BEGIN, so that
writes join one open transaction until `commit()`, as on SQLite. A submit of one job that
may be committed at once (`submit`'s `alone`) is one statement outside any transaction
(PostgreSQL commits it before answering: the round trips of BEGIN and COMMIT saved), or,
with the daemon's other writes open, its INSERT and their COMMIT in one round trip. The
isolation is READ COMMITTED: each statement sees what was committed when it started, which
the claims below rely on.

Where SQLite has one writer at a time, here writers run side by side, so what SQLite gets
from its write lock is asked for explicitly:
- claims lock the job's row (`FOR UPDATE SKIP LOCKED`: claimers pass over each other's rows);
- a limited class is counted under an advisory lock of that class (see `claim_next`);
- an attempt's end is fenced with its row locked (`attempt_is_current`);
- uniqueness and idempotency keys are unique indexes, their violations caught inside a
  SAVEPOINT so that the rest of the transaction (other clients' submits) goes on.

What the daemon's journal needs (bgjobd.journal.JournalStore) is here as on SQLite: every
write of the open transaction other than a submit's is kept, and redone in a new one when
that transaction is lost, so that nothing the daemon acted on (a claim, an attempt's end)
is forgotten while the submits of it are reported failed (`rollbacks`).

The server going away (a restart, terminated connections, a network cut noticed by TCP
keepalives): the call that meets it raises StoreOffline and did nothing, the store says so
once (`on_error`), and every later call tries to reconnect when its backoff allows (else
raises StoreOffline at once); connected again, it says so once, redoes the lost
transaction's kept writes first, and `changed()` reports news once (notices may have been
missed). A deadlock the server breaks by aborting our transaction: rolled back, the kept
writes redone at once, StoreConflict raised. Both are StoreRetry: "not now".
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import psycopg
from psycopg import errors, sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.pq import TransactionStatus

from bgjobd.store import pgpipeline, pgsubmit, ratewindow
from bgjobd.store.base import (
    HELD_COUNT_CAP,
    Added,
    AttemptOutput,
    FinishedAttempt,
    JobQuery,
    NewJob,
    PrunedJob,
    PruneRules,
    RateUse,
    StaleAttempt,
    Store,
    StoredOutput,
    UniqueTaken,
    WaitingEntry,
    in_claim_order,
)
from bgjobd.store.offline import KeyHeld, StoreConflict, StoreGone, StoreOffline, StoreRetry
from bgjobd.store.pauses import pause_infos
from bgjobd.store.rows import (
    COLUMNS,
    decode_error,
    encode,
    final_attempt,
    row_to_job,
    running_attempt,
    time_of,
)
from bgjobs.errors import BgjobsError, ExitCode
from bgjobs.model import (
    DEFAULT_QUEUE,
    FINAL_STATES,
    AttemptInfo,
    JobInfo,
    JobState,
    NodeInfo,
    Outcome,
    PauseInfo,
    PauseKind,
)
from bgjobs.rates import Rate

SCHEMA: Final = Path(__file__).with_name("schema_postgres.sql")
SCHEMA_VERSION: Final = 4
DEFAULT_SCHEMA: Final = "bgjobs"
_LIVE: Final = pgsubmit.LIVE
_FINAL: Final = [state.value for state in sorted(FINAL_STATES)]
_FOLD_ROWS: Final = 1_000
"""state_counts rows past which `counts()` folds them into one per state."""
_FENCE: Final = (
    "AND state = 'running' AND owner = %s AND attempts = %s "
    "AND (%s::integer IS NULL OR round = %s::integer)"
)
"""The attempt (owner, number, round or None for any) is the job's current one: checked by
`attempt_is_current`, and by a statement that ends the attempt itself."""
_NOT_PAUSED: Final = (
    "NOT EXISTS (SELECT FROM pauses WHERE pauses.kind = 'all' "
    "OR (pauses.kind = 'queue' AND pauses.name = jobs.queue) "
    "OR (pauses.kind = 'class' AND pauses.name = jobs.class_name))"
)
"""A job of `jobs` no stored pause holds back (as `pauses.held_back` reads them: a kind this
version does not know holds nothing back)."""
GET_JOB: Final = f"SELECT {COLUMNS} FROM jobs WHERE id = %s"
"""A job's row (its attempts' history is another table's)."""
_CLAIM_FIRST: Final = (
    "WITH locked AS (SELECT id, priority, run_at FROM jobs WHERE queue = %s "
    f"AND state = 'queued' AND NOT oneshot AND {_NOT_PAUSED} "
    "ORDER BY priority, run_at, id LIMIT %s FOR UPDATE SKIP LOCKED), "
    "picked AS (SELECT id, row_number() OVER (ORDER BY priority, run_at, id) AS turn "
    "FROM locked) "
    "UPDATE jobs SET state = 'running', attempts = attempts + 1, started_at = %s, "
    "worker_pid = (%s::integer[])[picked.turn], owner = %s, cancel_reason = NULL "
    "FROM picked WHERE jobs.id = picked.id RETURNING "
    + ", ".join(f"jobs.{column.strip()}" for column in COLUMNS.split(","))
    + ", picked.turn"
)
"""`claim_batch`: the first queued jobs of a queue, locked, claimed for the workers in
turn (the first job for the first worker)."""
_CLAIM_ONE: Final = (
    "UPDATE jobs SET state = 'running', attempts = attempts + 1, started_at = %s, "
    "worker_pid = %s, owner = %s, cancel_reason = NULL WHERE id = (SELECT id FROM jobs "
    f"WHERE queue = %s AND state = 'queued' AND NOT oneshot AND {_NOT_PAUSED} "
    f"ORDER BY priority, run_at, id LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING {COLUMNS}"
)
"""`_CLAIM_FIRST` for one worker, without its window and join: a fifth less of the server's
time (216 against 270 µs a claim on an idle server)."""
_CLAIM_QUEUED: Final = (
    "UPDATE jobs SET state = 'running', attempts = attempts + 1, started_at = %s, "
    "worker_pid = %s, owner = %s, cancel_reason = NULL WHERE id = %s "
    f"AND state = 'queued' RETURNING {COLUMNS}"
)
"""A claim of one queued job (args: now, worker pid, owner, job id), as made and as redone."""
_MIGRATE_LOCK: Final = "bgjobs schema migration"
_CLASS_LOCK: Final = "bgjobs class limit"
CONNECT_TIMEOUT_SECONDS: Final = 3
"""A connection attempt gives up after this (a server that does not answer at all)."""
RECONNECT_FIRST_SECONDS: Final = 0.05
RECONNECT_MAX_SECONDS: Final = 2.0
"""Reconnecting backs off from the first delay, doubling, up to this one: a restarted
server is found within about that long, and a down one costs a failed connect at most
this often (every call in between is answered StoreOffline at once)."""
_LINK_DEFAULTS: Final[dict[str, Any]] = {
    "connect_timeout": CONNECT_TIMEOUT_SECONDS,
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 3,
    "tcp_user_timeout": 10_000,
}
"""A server that vanishes without closing its connections (a host down, a network cut) is
noticed within about ten seconds instead of the system's two hours: the store's calls
block the daemon's loop (a synchronous driver), so a dead link must not hold them long."""
_DISCONNECTS: Final = ("08", "57P", "25P03", "25006")
"""SQLSTATE classes of a connection gone: connection exceptions, operator intervention
(the server shutting down, terminated backends, a server still starting), a session ended
for idling in a transaction; and a write refused as read-only (the server demoted to a
standby under us: a connection made again may reach the new primary, `_connect`)."""
READ_ONLY: Final = "the server is read-only (a standby, or default_transaction_read_only)"
SUBMIT_LOCK_WAIT: Final = "50ms"
"""How long a daemon's submit waits for a key held by another open transaction (an
application's `enqueue_in` of the same key, not committed yet) before it gives up with
KeyHeld: the statement blocks the daemon's loop, which must not wait for an application
(`PostgresStore.submit_lock_wait`). Set for the submit's INSERTs only (`_BRIEFLY`); every
other wait is the session's."""
_BRIEFLY: Final = "SELECT set_config('lock_timeout', %s, true)"
"""A transaction-local lock_timeout, sent in one pipeline ahead of a submit's statement
(and, inside the daemon's open transaction, the session's put back after it)."""
_NEVER_PREPARED: Final = frozenset({_BRIEFLY, "COMMIT"})
COMMIT_WITHIN_SECONDS: Final = 0.01
"""The journal commits claims and attempts' ends within this (SQLite's store: 2 ms). Each
commit blocks the daemon's loop for a round trip and a WAL flush; a transaction left open
longer holds only the rows it changed (others' claims skip them), so at 1,000 jobs a
second a commit carries ten attempts' writes rather than two: W1 +11% (1,080 against 970
jobs/s, `bench/run.py --systems bgjobs-pg1 --only W1`)."""
IDLE_IN_TRANSACTION_SECONDS: Final = 5
"""A transaction of ours is open for milliseconds (the journal commits within 10 ms): one
idle this long belongs to a frozen process, whose locks must not hold the others up."""


def _prepared(query: object) -> bool | None:
    """Whether psycopg may prepare a pipeline's statement (None: after a few uses). Never
    those that may follow a failed statement in one pipeline, and that the server skips:
    psycopg may take one for prepared that the server never parsed."""
    return False if query in _NEVER_PREPARED else None


def _rows_of(cursor: psycopg.Cursor[Any]) -> pgsubmit.Rows:
    return cursor.fetchall() if cursor.description is not None else []


class SchemaTooNew(BgjobsError):
    """The schema was made, or upgraded, by a newer bgjobs: this one must not write in it."""

    exit_code = ExitCode.FAILED


def link_defaults(dsn: str) -> dict[str, Any]:
    """`_LINK_DEFAULTS` that the DSN leaves out: its own settings win."""
    given = conninfo_to_dict(dsn)
    return {key: value for key, value in _LINK_DEFAULTS.items() if key not in given}


class PostgresStore(Store):
    def __init__(
        self,
        dsn: str,
        schema: str = DEFAULT_SCHEMA,
        *,
        application_name: str = "bgjobd",
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        if not schema or len(schema.encode()) > 63:
            raise ValueError(f"schema name {schema!r}: 1 to 63 bytes")
        self.schema = schema
        self.on_begin: Callable[[], None] | None = None
        self.commit_within = COMMIT_WITHIN_SECONDS
        self._along: tuple[str, int, str, float] | None = None
        """A claim to make along with the next final end (`claim_along_next_end`)."""
        self._claimed_along: JobInfo | None = None
        self._dsn = dsn
        self._application_name = application_name
        self._on_error = on_error
        self._kept: list[tuple[str, Sequence[Any], int | None]] = []
        """The open transaction's writes other than submits: redone after it was lost. The
        third item: the job a claim took (its redo may find the job taken by another)."""
        self._lost_claims: list[int] = []
        self._dirty = False
        """Whether the open transaction holds any write (kept or a submit's)."""
        self.submit_lock_wait: str | None = None
        """How long a submit's INSERT may wait for a lock (SUBMIT_LOCK_WAIT: the daemon's),
        then KeyHeld; None: as long as the session's lock_timeout says (by default, for
        ever: a client of its own, like `run_job.py`, waits for the key's transaction)."""
        self._session_lock_timeout = "0"
        """The session's lock_timeout (the DSN's, or the server's), put back after a submit."""
        self._redo_pending = False
        """The connection went with a transaction holding writes: the kept ones are redone
        first thing on the next connection."""
        self.rollbacks = 0
        """How many transactions holding writes were lost (their kept writes redone, their
        submits gone): the journal tells a submit made before such a loss that it failed."""
        self.offline: str | None = None
        """Why the server cannot be reached now (None: connected)."""
        self.gone: str | None = None
        """Why the store's tables are no longer there (dropped under us), for good."""
        self._offline_since = 0.0
        self._next_try = 0.0
        self._backoff = RECONNECT_FIRST_SECONDS
        self._reconnected = False
        """Notices may have been missed while offline: `changed()` says so once."""
        self._news = False
        """A notice of another connection's commit was read and not yet told."""
        self._db = self._connect()
        try:
            self._migrate()
            self._prepare(self._db)
        except BaseException:
            self._db.close()
            raise

    def _connect(self) -> psycopg.Connection[Any]:
        db = psycopg.connect(
            self._dsn,
            autocommit=True,
            application_name=self._application_name,
            **link_defaults(self._dsn),
        )
        try:
            row = db.execute("SHOW transaction_read_only").fetchone()
        except BaseException:
            db.close()
            raise
        if row is not None and row[0] == "on":
            # A standby (the DSN's host not the primary after a failover): no write would
            # go through. Not connected, as far as the store goes: it tries again later.
            db.close()
            raise psycopg.OperationalError(f"{READ_ONLY}: bgjobs writes to the primary")
        return db

    def _prepare(self, db: psycopg.Connection[Any]) -> None:
        db.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(self.schema)))
        if "idle_in_transaction_session_timeout" not in self._dsn:
            # A node frozen (SIGSTOP, a paused VM) inside a transaction would hold its row
            # locks, and the others would wait for them; the server ends its session
            # instead, and the node, woken, reconnects and redoes its kept writes.
            db.execute(
                "SELECT set_config('idle_in_transaction_session_timeout', %s, false)",
                (f"{IDLE_IN_TRANSACTION_SECONDS * 1000}",),
            )
        (self._session_lock_timeout,) = db.execute("SHOW lock_timeout").fetchone() or ("0",)
        db.add_notify_handler(functools.partial(self._heard, db.info.backend_pid))
        db.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.schema)))

    def _migrate(self) -> None:
        """Create the schema and its tables, or check the version of those there. Under a
        transaction's advisory lock (one key per schema): nodes starting together wait for
        the first, then find its tables."""
        with self._db.transaction():
            self._db.execute(
                "SELECT pg_advisory_xact_lock(hashtext(%s), hashtext(%s))",
                (_MIGRATE_LOCK, self.schema),
            )
            name = sql.Identifier(self.schema)
            # Made only when missing: CREATE SCHEMA IF NOT EXISTS needs the right to create
            # schemas in the database even when this one is there, and a role given a
            # schema of its own (`CREATE SCHEMA ... AUTHORIZATION`) has no such right.
            there = self._db.execute(
                "SELECT 1 FROM pg_namespace WHERE nspname = %s", (self.schema,)
            ).fetchone()
            if there is None:
                self._db.execute(sql.SQL("CREATE SCHEMA {}").format(name))
            self._db.execute(sql.SQL("SET LOCAL search_path TO {}").format(name))
            found = self._db.execute("SELECT to_regclass('meta') IS NOT NULL").fetchone()
            if found and found[0]:
                row = self._db.execute(
                    "SELECT value FROM meta WHERE key = 'schema_version'"
                ).fetchone()
                version = int(row[0]) if row else 0
                if version > SCHEMA_VERSION:
                    raise SchemaTooNew(
                        f"the PostgreSQL store (schema {self.schema!r}) is of version "
                        f"{version}, newer than this bgjobs writes ({SCHEMA_VERSION}): "
                        "upgrade bgjobs here as on the other nodes"
                    )
                if version == SCHEMA_VERSION and self._has_added_tables():
                    return
            self._db.execute(SCHEMA.read_text().encode())

    def _has_added_tables(self) -> bool:
        """Whether a schema of this version has the tables added to it since (`pauses`);
        if not, the schema file, every statement of which may run again, adds them."""
        found = self._db.execute("SELECT to_regclass('pauses') IS NOT NULL").fetchone()
        return bool(found and found[0])

    # the connection: lost and found again ----------------------------------------------------

    def _execute(
        self,
        query: str | bytes | sql.Composable,
        args: Sequence[Any] = (),
    ) -> Any:
        """One statement; a connection that breaks under it makes the store offline."""
        with self._answering():
            return self._db.execute(query, args)  # type: ignore[arg-type]

    def _execute_all(
        self, statements: Sequence[tuple[str | bytes | sql.Composable, Sequence[Any]]]
    ) -> list[Any]:
        """Statements sent together in one pipeline, their answers read once all are sent:
        one round trip. Errors as `_execute`'s."""
        with self._answering(), pgpipeline.pipeline(self._db):
            return [
                self._db.execute(query, args, prepare=_prepared(query))  # type: ignore[arg-type]
                for query, args in statements
            ]

    @contextlib.contextmanager
    def _answering(self) -> Iterator[None]:
        """Connected (or StoreOffline), and the server's errors as the store says them: a
        deadlock broken by undoing the transaction (its kept writes redone), a connection
        gone (offline)."""
        self._connected()
        try:
            yield
        except (errors.DeadlockDetected, errors.SerializationFailure) as exc:
            raise self._conflict(exc) from exc
        except errors.LockNotAvailable as exc:
            self._conflict(exc)
            raise KeyHeld(f"a lock held by another transaction: {_first_line(exc)}") from exc
        except (errors.UndefinedTable, errors.InvalidSchemaName) as exc:
            raise self._gone(_first_line(exc)) from exc
        except psycopg.Error as exc:
            # Most are OperationalError, not all (an idle session's end is InternalError).
            if not self._db.broken and not self._db.closed and not _is_disconnect(exc):
                raise
            raise self._lost(exc) from exc

    def _conflict(self, exc: BaseException) -> StoreConflict:
        """The server aborted the transaction to break a deadlock with another node: roll
        it back and redo its kept writes at once (its submits are lost: `rollbacks`)."""
        self._execute("ROLLBACK")
        if self._dirty:
            self._dirty = False
            self.rollbacks += 1
        self._redo_pending = True
        self._redo()
        return StoreConflict(f"the transaction was undone by a conflict: {_first_line(exc)}")

    def _lost(self, exc: BaseException) -> StoreOffline:
        """The connection is gone (and with it the server's side of the open transaction)."""
        with contextlib.suppress(Exception):
            self._db.close()
        if self._dirty:
            self._dirty = False
            self._redo_pending = True
            self.rollbacks += 1
        if self.offline is None:
            now = time.monotonic()
            self.offline = f"PostgreSQL cannot be reached: {_first_line(exc)}"
            self._offline_since = now
            self._backoff = RECONNECT_FIRST_SECONDS
            self._next_try = now  # a restarted server may answer at once
            self._say(
                f"{self.offline}; submits are refused with store_unavailable, reconnecting "
                f"with backoff (up to {RECONNECT_MAX_SECONDS:g}s)"
            )
        return StoreOffline(self.offline)

    def _gone(self, why: str) -> StoreGone:
        """The schema, or a table of it, was dropped under us: said once, and every call
        from here on raises StoreGone without a statement (the open transaction, aborted
        by the error, is rolled back: its writes had nowhere to go)."""
        if self.gone is None:
            self.gone = (
                f"the PostgreSQL schema {self.schema!r} no longer holds bgjobs' tables "
                f"({why}): dropped while this node ran?"
            )
            self._say(self.gone)
            with contextlib.suppress(psycopg.Error):
                self._db.execute("ROLLBACK")
            self._dirty = False
            self._kept.clear()
        return StoreGone(self.gone)

    def _connected(self) -> None:
        """Return once connected (reconnecting if it is time to try), else StoreOffline
        (or StoreGone, for good)."""
        if self.gone is not None:
            raise StoreGone(self.gone)
        if self.offline is None and not self._db.closed:
            return
        if self.offline is None:
            raise self._lost(psycopg.OperationalError("the connection was closed"))
        now = time.monotonic()
        if now < self._next_try:
            raise StoreOffline(self.offline)
        try:
            db = self._connect()
            self._prepare(db)
        except psycopg.Error as exc:
            self._next_try = now + self._backoff
            self._backoff = min(self._backoff * 2, RECONNECT_MAX_SECONDS)
            self.offline = f"PostgreSQL cannot be reached: {_first_line(exc)}"
            raise StoreOffline(self.offline) from exc
        self._db = db
        self._say(f"PostgreSQL reached again after {now - self._offline_since:.1f}s")
        self.offline = None
        self._reconnected = True
        if self._redo_pending:
            self._redo()

    def _redo(self) -> None:
        """The kept writes of the lost transaction, again, in a new one (the journal commits
        it). Each was conditional on the state it changes (a claim takes a queued job, an
        end is fenced): one whose row changed meanwhile changes nothing."""
        kept, self._kept = self._kept, []
        self._redo_pending = False
        lost: list[int] = []
        try:
            for query, args, claimed in kept:
                cursor = self._write(query, args)
                if claimed is not None:
                    if cursor.rowcount == 1:
                        self._kept[-1] = (query, args, claimed)
                    else:
                        lost.append(claimed)  # another process took the job meanwhile
        except StoreRetry:
            self._kept = kept  # all of them again, on the next connection
            self._redo_pending = True
            self._dirty = False
            raise
        self._lost_claims += lost

    def _say(self, message: str) -> None:
        if self._on_error is not None:
            self._on_error(message)

    # transactions ------------------------------------------------------------------------

    @property
    def in_transaction(self) -> bool:
        if self._redo_pending:
            return True
        return not self._db.closed and self._db.info.transaction_status != TransactionStatus.IDLE

    def _begin(self) -> None:
        """Open the write transaction, if none is open."""
        for query, args in self._opening():
            self._execute(query, args)

    def _opening(self) -> list[tuple[str, Sequence[Any]]]:
        """`_begin`, its BEGIN (if one is needed) returned to be sent in one pipeline with
        the statement that opens the transaction: one round trip where there were two."""
        self._connected()
        if self._db.info.transaction_status != TransactionStatus.IDLE:
            return []
        if self.on_begin is not None:
            self.on_begin()
        return [("BEGIN", ())]

    def _write(
        self, query: str, args: Sequence[Any] = (), *, submit: bool = False
    ) -> psycopg.Cursor[Any]:
        opening = self._opening()
        cursor: psycopg.Cursor[Any] = (
            self._execute_all([*opening, (query, args)])[-1]
            if opening
            else self._execute(query, args)
        )
        self._dirty = True
        if not submit:
            self._kept.append((query, args, None))
        return cursor

    def _read(self, query: str, args: Sequence[Any] = ()) -> psycopg.Cursor[Any]:
        cursor: psycopg.Cursor[Any] = self._execute(query, args)
        return cursor

    @contextlib.contextmanager
    def _savepoint(self) -> Iterator[None]:
        """Statements whose failure must undo only themselves (a violated unique index):
        PostgreSQL otherwise aborts the whole transaction at the first error."""
        self._begin()
        self._execute("SAVEPOINT attempt")
        try:
            yield
        except StoreRetry:
            raise  # the whole transaction went (with the connection, or by a conflict)
        except BaseException:
            self._execute("ROLLBACK TO SAVEPOINT attempt")
            self._execute("RELEASE SAVEPOINT attempt")
            raise
        self._execute("RELEASE SAVEPOINT attempt")

    def _forget(self) -> None:
        self._kept = []
        self._dirty = False

    def commit(self) -> None:
        self._connected()  # a lost transaction's kept writes are redone here, then committed
        status = self._db.info.transaction_status
        if status == TransactionStatus.INERROR:
            # COMMIT would answer ROLLBACK quietly: say that the writes are gone. The kept
            # ones stay for `redo_kept_writes`, which the journal calls next.
            self._execute("ROLLBACK")
            raise errors.InFailedSqlTransaction("the transaction failed earlier: rolled back")
        if status != TransactionStatus.IDLE:
            # A connection lost during COMMIT leaves it unknown whether it was applied: the
            # kept writes are redone on the next connection (each conditional: redone after
            # their commit, they change nothing), the submits are reported failed.
            self._execute("COMMIT")
        self._forget()

    def rollback(self) -> None:
        self._forget()
        self._redo_pending = False
        if (
            self.offline is None
            and not self._db.closed
            and self._db.info.transaction_status != TransactionStatus.IDLE
        ):
            with contextlib.suppress(StoreOffline):
                self._execute("ROLLBACK")
        self._forget()

    def redo_kept_writes(self) -> int:
        """After a failed commit: roll back what is left of the transaction and redo its
        kept writes in a new one (submits are not redone). Offline, they are redone on the
        next connection. Returns how many writes were (or will be) redone."""
        if self.offline is not None or self._db.closed:
            return len(self._kept)
        kept, self._kept = self._kept, []
        if self._db.info.transaction_status != TransactionStatus.IDLE:
            self._execute("ROLLBACK")
        self._dirty = False
        self.rollbacks += 1
        self._redo_pending = True
        self._kept = kept
        with contextlib.suppress(StoreRetry):  # else kept for the next connection
            self._redo()
        return len(kept)

    def quick_check(self) -> list[str]:
        """PostgreSQL checks its own pages (checksums, if enabled): nothing to report."""
        return []

    def checkpoint_soon(self) -> None:
        """PostgreSQL checkpoints its WAL itself."""

    def checkpoint_failures(self) -> int:
        return 0

    def close(self) -> None:
        if self._db.closed:
            return
        with contextlib.suppress(psycopg.Error, StoreOffline):
            self.rollback()
        self._db.close()

    # submitting ----------------------------------------------------------------------------

    def add(self, links: Sequence[NewJob]) -> list[int]:
        # The statements are pgsubmit's, shared with an application's transactional enqueue.
        # A lost connection or a broken deadlock took the whole transaction: no savepoint
        # is left to roll back to (StoreRetry passes through the steps).
        return pgsubmit.run(self._write_rows, pgsubmit.add(links), passthrough=(StoreRetry,))

    def submit(self, links: Sequence[NewJob], *, alone: bool = False) -> Added:
        """A single job in one statement (`pgsubmit.add_one`: no savepoint; the fast path's
        pause check inside the INSERT). With `alone`: while no transaction is open, that
        statement outside any transaction (PostgreSQL commits it before it answers: one
        round trip instead of BEGIN, INSERT and COMMIT); while the daemon's other writes
        are open, the INSERT with their COMMIT in one round trip. A chain or batch: `add`
        (under a savepoint) after the pause check."""
        if len(links) != 1 or links[0].batch_callback:
            return super().submit(links, alone=alone)
        steps = pgsubmit.add_one(links[0])
        self._connected()  # reconnecting redoes a lost transaction's kept writes: join them
        run_rows: Callable[[str, Sequence[Any]], pgsubmit.Rows] = self._write_rows
        committed = alone
        if alone and not self.in_transaction:
            run_rows = self._alone_rows
        elif alone and self._db.info.transaction_status == TransactionStatus.INTRANS:
            # The daemon's other writes are open (an attempt's end, a claim): the INSERT and
            # their COMMIT in one round trip, instead of the INSERT now and the COMMIT at the
            # end of the loop iteration.
            run_rows = self._committing_rows
        else:
            committed = False
        job_id, state = pgsubmit.run(run_rows, steps, passthrough=(StoreRetry,))
        return Added([job_id], started=state is JobState.RUNNING, committed=committed)

    def _committing_rows(self, query: str, args: Sequence[Any]) -> pgsubmit.Rows:
        # The first statement commits the open transaction with it; a conflict's lookups
        # after it read outside any transaction.
        if self._db.info.transaction_status != TransactionStatus.INTRANS:
            return self._alone_rows(query, args)
        try:
            statements = [*self._brief_wait(query), (query, args), ("COMMIT", ())]
            cursor = self._execute_all(statements)[-2]
        except psycopg.Error:
            if _status(self._db) == TransactionStatus.INERROR:
                # The statement failed the transaction (and the COMMIT with it): roll back
                # and redo the kept writes now, rather than leave a failed transaction
                # open until the journal's next commit.
                self.redo_kept_writes()
            raise
        self._forget()
        return _rows_of(cursor)

    def _alone_rows(self, query: str, args: Sequence[Any]) -> pgsubmit.Rows:
        # In autocommit, outside a transaction: the pipeline's statements are one implicit
        # transaction, committed before the answer (the lock wait set for it alone).
        if not (briefly := self._brief_wait(query)):
            return _rows_of(self._read(query, args))
        return _rows_of(self._execute_all([*briefly, (query, args)])[-1])

    def _brief_wait(self, query: str) -> list[tuple[str, Sequence[Any]]]:
        """The statement setting a submit's lock wait, to send ahead of it, when that wait
        is shorter than the session's: for an INSERT, the one statement that may wait for
        another transaction (on a unique index). Nothing for the lookups, which read, nor for
        the savepoints' statements, which must come alone after a failed statement."""
        if self.submit_lock_wait is None or not query.startswith("INSERT"):
            return []
        return [(_BRIEFLY, (self.submit_lock_wait,))]

    def add_each(self, jobs: Sequence[NewJob]) -> list[int] | None:
        steps = pgsubmit.add_each(jobs)
        return pgsubmit.run(self._write_rows, steps, passthrough=(StoreRetry,))

    def _write_rows(self, query: str, args: Sequence[Any]) -> pgsubmit.Rows:
        # A submit's statements: not kept for a redo (its client is told it failed). Its
        # short lock wait, then the session's again for the transaction's other writes (a
        # failed statement takes the setting with it: to its savepoint, or the whole
        # transaction).
        if not (briefly := self._brief_wait(query)):
            return _rows_of(self._write(query, args, submit=True))
        statements = [
            *self._opening(),
            *briefly,
            (query, args),
            (_BRIEFLY, (self._session_lock_timeout,)),
        ]
        cursor = self._execute_all(statements)[-2]
        self._dirty = True
        return _rows_of(cursor)

    def _read_rows(self, query: str, args: Sequence[Any]) -> pgsubmit.Rows:
        return _rows_of(self._read(query, args))

    def find_by_key(self, key: str) -> list[int] | None:
        return pgsubmit.run(self._read_rows, pgsubmit.find_by_key(key))

    def find_live_unique(self, unique_key: str) -> int | None:
        return pgsubmit.run(self._read_rows, pgsubmit.find_live_unique(unique_key))

    # reading -------------------------------------------------------------------------------

    def get(self, job_id: int) -> JobInfo | None:
        row = self._read(GET_JOB, (job_id,)).fetchone()
        if row is None:
            return None
        history = self._history(job_id)
        if row[5] == JobState.RUNNING.value:
            history.append(running_attempt(row))
        elif row[23] is not None:
            history.append(final_attempt(row))
        return row_to_job(row, history)

    def _history(self, job_id: int) -> list[AttemptInfo]:
        rows = self._read(
            "SELECT number, started_at, finished_at, outcome, worker_pid, error, duration, "
            "round, node FROM attempts WHERE job_id = %s ORDER BY seq",
            (job_id,),
        )
        return [
            AttemptInfo(
                number=number,
                started_at=datetime.fromtimestamp(started, UTC),
                finished_at=time_of(finished),
                outcome=None if outcome is None else Outcome(outcome),
                worker_pid=pid,
                error=None if error is None else decode_error(error),
                duration=duration,
                round=round_number,
                node=node or "",
            )
            for number, started, finished, outcome, pid, error, duration, round_number, node in rows
        ]

    def states_of(self, job_ids: Sequence[int]) -> dict[int, tuple[JobState, int]]:
        rows = self._read(
            "SELECT id, state, attempts FROM jobs WHERE id = ANY(%s)", (list(job_ids),)
        )
        return {int(i): (JobState(state), int(n)) for i, state, n in rows}

    def search(self, query: JobQuery) -> tuple[list[JobInfo], int]:
        where, args = _filters(query)
        order = "ASC" if query.oldest_first else "DESC"
        rows = self._read(
            f"SELECT {COLUMNS} FROM jobs {where} ORDER BY id {order} LIMIT %s OFFSET %s",
            (*args, query.limit, query.offset),
        ).fetchall()
        if not (query.class_name or query.search or query.queue):
            counts = self.counts()
            total = sum(counts[s] for s in query.states) if query.states else sum(counts.values())
        else:
            found = self._read(f"SELECT count(*) FROM jobs {where}", args).fetchone()
            total = int(found[0]) if found else 0
        return [row_to_job(row) for row in rows], total

    def counts(self) -> dict[JobState, int]:
        rows = self._read(
            "SELECT state, sum(delta), count(*) FROM state_counts GROUP BY state"
        ).fetchall()
        if sum(int(kept) for _, _, kept in rows) > _FOLD_ROWS and not self.in_transaction:
            self._fold_counts()
        found = {state: int(total) for state, total, _ in rows}
        return {state: found.get(state.value, 0) for state in JobState}

    def _fold_counts(self) -> None:
        """One row per state instead of every delta, in a short transaction of its own.
        Two folding at once: the second waits for the first's row locks, then skips the
        rows it deleted, and its snapshot does not see the first's sums: no row twice."""
        self._connected()
        try:
            with self._db.transaction():
                self._db.execute(
                    "WITH gone AS (DELETE FROM state_counts RETURNING state, delta) "
                    "INSERT INTO state_counts (state, delta) "
                    "SELECT state, sum(delta) FROM gone GROUP BY state"
                )
        except psycopg.Error as exc:
            if _is_disconnect(exc) or self._db.broken or self._db.closed:
                raise self._lost(exc) from exc
            raise

    def batch_members(self, batch_id: int) -> list[JobInfo]:
        rows = self._read(
            f"SELECT {COLUMNS} FROM jobs WHERE batch_id = %s AND id <> %s ORDER BY id",
            (batch_id, batch_id),
        )
        return [row_to_job(row) for row in rows]

    def batch_pending(self, batch_id: int) -> bool:
        row = self._read(
            f"SELECT 1 FROM jobs WHERE batch_id = %s AND state IN {_LIVE} AND id <> %s LIMIT 1",
            (batch_id, batch_id),
        ).fetchone()
        return row is not None

    def chain(self, chain_id: int) -> list[JobInfo]:
        rows = self._read(
            f"SELECT {COLUMNS} FROM jobs WHERE chain_id = %s ORDER BY chain_position", (chain_id,)
        )
        return [row_to_job(row) for row in rows]

    def unfinished_oneshots(self) -> list[JobInfo]:
        rows = self._read(
            f"SELECT {COLUMNS} FROM jobs WHERE oneshot AND state IN {_LIVE} ORDER BY id"
        )
        return [row_to_job(row) for row in rows]

    def scheduled(self, after: tuple[float, int] | None, limit: int) -> list[WaitingEntry]:
        columns = "SELECT run_at, id, priority, class_name FROM jobs "
        if after is None:
            rows = self._read(
                columns + "WHERE state = 'scheduled' AND NOT oneshot ORDER BY run_at, id LIMIT %s",
                (limit,),
            )
        else:
            rows = self._read(
                columns + "WHERE state = 'scheduled' AND NOT oneshot AND (run_at, id) > (%s, %s) "
                "ORDER BY run_at, id LIMIT %s",
                (*after, limit),
            )
        return [WaitingEntry(*row) for row in rows]

    def queued(self) -> list[WaitingEntry]:
        rows = self._read(
            "SELECT run_at, id, priority, class_name FROM jobs WHERE state = 'queued' "
            "AND NOT oneshot ORDER BY priority, run_at, id"
        )
        return [WaitingEntry(*row) for row in rows]

    def running(self, owner: str | None = None) -> list[JobInfo]:
        query = f"SELECT {COLUMNS} FROM jobs WHERE state = 'running'"
        rows = (
            self._read(query + " AND owner = %s ORDER BY id", (owner,))
            if owner is not None
            else self._read(query + " ORDER BY id")
        )
        return [row_to_job(row) for row in rows]

    def finished_per_minute(self, since: float) -> list[tuple[int, JobState, int]]:
        rows = self._read(
            "SELECT floor(finished_at / 60)::bigint AS minute, state, count(*) FROM jobs "
            "WHERE finished_at >= %s AND state IN ('succeeded', 'failed', 'cancelled') "
            "GROUP BY minute, state ORDER BY minute, state",
            (since,),
        )
        return [(int(minute), JobState(state), int(count)) for minute, state, count in rows]

    # transitions ---------------------------------------------------------------------------

    def promote(self, job_ids: Sequence[int]) -> list[int]:
        rows = self._write(
            "UPDATE jobs SET state = 'queued' WHERE state = 'scheduled' AND id = ANY(%s) "
            "RETURNING id",
            (list(job_ids),),
        ).fetchall()
        return sorted(int(job_id) for (job_id,) in rows)

    def claim(
        self,
        job_id: int,
        owner: str,
        worker_pid: int | None,
        now: float,
        *,
        limit: int | None = None,
        rate: Rate | None = None,
    ) -> JobInfo | None:
        under_limit = ""
        args: tuple[Any, ...] = (now, worker_pid, owner, job_id, now)
        if limit is not None or rate is not None:
            found = self._write(
                "SELECT class_name, limit_key FROM jobs WHERE id = %s", (job_id,)
            ).fetchone()
            if found is None:
                return None
            # Waits for a claimer of the group to commit; the counts below (a statement of
            # their own, so a snapshot taken after the wait) then see its claim.
            self._write(
                "SELECT pg_advisory_xact_lock(hashtext(%s), hashtext(%s))",
                (_CLASS_LOCK, _group_lock(found[0], found[1])),
            )
        if limit is not None:
            under_limit = (
                " AND (SELECT count(*) FROM jobs AS other WHERE other.state = 'running' "
                "AND other.class_name = jobs.class_name AND other.limit_key = jobs.limit_key) < %s"
            )
            args = (*args, limit)
        if rate is not None:
            under_limit += (
                " AND (SELECT count(*) FROM starts WHERE starts.class_name = jobs.class_name "
                "AND starts.limit_key = jobs.limit_key AND starts.started_at > %s) < %s"
            )
            args = (*args, ratewindow.window_start(rate, now), rate.starts)
        job = self._start(
            "UPDATE jobs SET state = 'running', attempts = attempts + 1, started_at = %s, "
            "worker_pid = %s, owner = %s, cancel_reason = NULL WHERE id = %s "
            f"AND (state = 'queued' OR (state = 'scheduled' AND run_at <= %s)){under_limit} "
            f"RETURNING {COLUMNS}",
            args,
        )
        if job is not None and rate is not None:
            self._count_start(job_id, rate, now)
        return job

    def _count_start(self, job_id: int, rate: Rate, now: float) -> None:
        """A claimed job of a rate-limited class (its group's advisory lock held): its
        start counts against the rate (and the starts no claim counts any more go)."""
        group = "(SELECT class_name, limit_key FROM jobs WHERE id = %s)"
        self._write(
            f"DELETE FROM starts WHERE (class_name, limit_key) = {group} AND started_at <= %s",
            (job_id, ratewindow.prune_before(rate, now)),
        )
        self._write(
            "INSERT INTO starts (class_name, limit_key, started_at) "
            "SELECT class_name, limit_key, %s FROM jobs WHERE id = %s",
            (now, job_id),
        )

    def _start(self, query: str, args: Sequence[Any]) -> JobInfo | None:
        row = self._write(query, args).fetchone()
        if row is None:
            return None
        job = row_to_job(row, [running_attempt(row)])
        self._kept[-1] = (query, args, job.id)  # a claim: its redo must take the job again
        return job

    def lost_claims(self) -> list[int]:
        """The jobs claimed in a transaction the server lost whose claim could not be made
        again on the new connection (another node took the job, or it was cancelled):
        their attempts here must stop. Each is told once."""
        lost, self._lost_claims = self._lost_claims, []
        return lost

    def claim_oneshot(
        self, job_id: int, owner: str, worker_pid: int | None, now: float
    ) -> JobInfo | None:
        return self._start(
            "UPDATE jobs SET state = 'running', attempts = attempts + 1, started_at = %s, "
            "worker_pid = %s, owner = %s, cancel_reason = NULL WHERE id = %s AND oneshot "
            "AND (state = 'queued' OR (state = 'scheduled' AND run_at <= %s)) "
            f"RETURNING {COLUMNS}",
            (now, worker_pid, owner, job_id, now),
        )

    def adopt(
        self, job_ids: Sequence[int], owner: str
    ) -> list[tuple[WaitingEntry, JobState]] | None:
        # The rows locked first: a runner's claim cannot come between the check and the change.
        states = self._write(
            "SELECT state FROM jobs WHERE id = ANY(%s) ORDER BY id FOR UPDATE", (list(job_ids),)
        ).fetchall()
        if any(state == JobState.RUNNING.value for (state,) in states):
            return None
        rows = self._write(
            "UPDATE jobs SET oneshot = FALSE, owner = CASE WHEN state IN "
            "('queued', 'scheduled', 'waiting') THEN %s ELSE owner END "
            "WHERE id = ANY(%s) AND oneshot RETURNING run_at, id, priority, class_name, state",
            (owner, list(job_ids)),
        ).fetchall()
        return [
            (WaitingEntry(run_at, job_id, priority, class_name), JobState(state))
            for run_at, job_id, priority, class_name, state in sorted(rows, key=lambda r: r[1])
            if state in ("queued", "scheduled")
        ]

    def finish_attempt(
        self,
        job_id: int,
        attempt: FinishedAttempt,
        state: JobState,
        *,
        result: Any = None,
        run_at: float | None = None,
        max_attempts: int | None = None,
        reason: str | None = None,
        count_attempt: bool = True,
    ) -> JobInfo:
        error = None if attempt.error is None else encode(attempt.error)
        encoded = None if result is None else encode(result)
        final = state in FINAL_STATES
        if final and count_attempt:
            # The row itself describes the final attempt (jobs.outcome): no attempts row.
            # The fence (`attempt_is_current`) is the UPDATE's own condition: it locks the
            # row and checks it again once locked (READ COMMITTED), as SELECT ... FOR
            # UPDATE would, one round trip fewer for the commonest end of an attempt.
            fence = ""
            fenced: tuple[Any, ...] = ()
            if attempt.owner is not None:
                fence = _FENCE
                fenced = (attempt.owner, attempt.number, attempt.round, attempt.round)
            row = self._write_and_claim(
                "UPDATE jobs SET state = %s, result = %s, error = coalesce(%s, error), "
                "reason = %s, finished_at = %s, started_at = coalesce(started_at, %s), "
                "outcome = %s, max_attempts = coalesce(%s, max_attempts) WHERE id = %s "
                f"{fence} RETURNING {COLUMNS}",
                (
                    state.value,
                    encoded,
                    error,
                    reason,
                    attempt.finished_at,
                    attempt.finished_at - attempt.duration,
                    attempt.outcome.value,
                    max_attempts,
                    job_id,
                    *fenced,
                ),
            )
            if row is None and attempt.owner is not None:
                raise StaleAttempt(f"job {job_id}: attempt {attempt.number} of {attempt.owner}")
            assert row is not None, f"job {job_id} is not stored"
            return row_to_job(row)
        if attempt.owner is not None and not self.attempt_is_current(
            job_id, attempt.owner, attempt.number, attempt.round
        ):
            raise StaleAttempt(f"job {job_id}: attempt {attempt.number} of {attempt.owner}")
        self._write(
            "INSERT INTO attempts (job_id, number, round, started_at, finished_at, outcome, "
            "worker_pid, error, duration, node) SELECT id, %s, round, coalesce(started_at, %s), "
            "%s, %s, worker_pid, %s, %s, owner FROM jobs WHERE id = %s",
            (
                attempt.number,
                attempt.finished_at - attempt.duration,
                attempt.finished_at,
                attempt.outcome.value,
                error,
                attempt.duration,
                job_id,
            ),
        )
        row = self._write(
            "UPDATE jobs SET state = %s, result = %s, error = coalesce(%s, error), reason = %s, "
            "finished_at = %s, run_at = coalesce(%s, run_at), "
            "max_attempts = coalesce(%s, max_attempts), worker_pid = NULL, "
            f"attempts = attempts - %s WHERE id = %s RETURNING {COLUMNS}",
            (
                state.value,
                encoded,
                error,
                reason,
                attempt.finished_at if final else None,
                run_at,
                max_attempts,
                0 if count_attempt else 1,
                job_id,
            ),
        ).fetchone()
        assert row is not None, f"job {job_id} is not stored"
        return row_to_job(row)

    def claim_along_next_end(self, owner: str, worker_pid: int, queue: str, now: float) -> bool:
        self._along = (owner, worker_pid, queue, now)
        self._claimed_along = None
        return True

    def claimed_along(self) -> JobInfo | None:
        job, self._claimed_along, self._along = self._claimed_along, None, None
        return job

    def _write_and_claim(self, query: str, args: Sequence[Any]) -> tuple[Any, ...] | None:
        """The end's UPDATE (its row, or None), and the claim asked for along with it, if
        any, in one pipeline: both sent, then both answers read (`_CLAIM_ONE`, kept for a
        redo as a claim of that job, after the end)."""
        along, self._along = self._along, None
        if along is None:
            row: tuple[Any, ...] | None = self._write(query, args).fetchone()
            return row
        owner, worker_pid, queue, now = along
        opening = self._opening()
        claim_args = (now, worker_pid, owner, queue)
        try:
            *_, ended, claimed = self._execute_all(
                [*opening, (query, args), (_CLAIM_ONE, claim_args)]
            )
        except psycopg.Error:
            if _status(self._db) == TransactionStatus.INERROR:
                self.redo_kept_writes()  # as `_committing_rows` does, for the same reason
            raise
        self._dirty = True
        self._kept.append((query, args, None))
        row = ended.fetchone()
        if (got := claimed.fetchone()) is not None:
            self._claimed_along = self._kept_claim(got, owner, now)
        return row

    def _kept_claim(self, row: tuple[Any, ...], owner: str, now: float) -> JobInfo:
        """The job a claim statement started (its row), kept for a redo as a claim of that
        job, so that a lost transaction takes the same job again."""
        job = row_to_job(row, [running_attempt(row)])
        self._kept.append((_CLAIM_QUEUED, (now, job.worker_pid, owner, job.id), job.id))
        return job

    def _keep_final_attempts(self, job_ids: Sequence[int], states: Sequence[str]) -> None:
        """Before a finished job runs again, its final attempt moves from its row to the
        attempts table, like every earlier one."""
        self._write(
            "INSERT INTO attempts (job_id, number, round, started_at, finished_at, outcome, "
            "worker_pid, error, duration, node) SELECT id, attempts, round, "
            "coalesce(started_at, finished_at), finished_at, outcome, worker_pid, "
            "CASE WHEN outcome IN ('succeeded', 'cancelled') THEN NULL ELSE error END, "
            "finished_at - coalesce(started_at, finished_at), owner FROM jobs "
            "WHERE id = ANY(%s) AND outcome IS NOT NULL AND state = ANY(%s) ORDER BY id",
            (list(job_ids), list(states)),
        )

    def cancel_waiting(self, job_id: int, reason: str, now: float) -> JobInfo | None:
        row = self._write(
            "UPDATE jobs SET state = 'cancelled', reason = %s, finished_at = %s WHERE id = %s "
            f"AND state IN ('waiting', 'scheduled', 'queued') RETURNING {COLUMNS}",
            (reason, now, job_id),
        ).fetchone()
        return None if row is None else row_to_job(row)

    def mark_cancelled(self, job_ids: Sequence[int], reason: str, now: float) -> list[int]:
        rows = self._write(
            "UPDATE jobs SET state = 'cancelled', reason = %s, finished_at = %s "
            "WHERE id = ANY(%s) AND state IN ('waiting', 'scheduled', 'queued') RETURNING id",
            (reason, now, list(job_ids)),
        ).fetchall()
        order = {job_id: n for n, job_id in enumerate(job_ids)}
        return sorted((int(job_id) for (job_id,) in rows), key=order.__getitem__)

    def requeue(self, job_id: int, now: float) -> JobInfo | None:
        row = self._write(
            "SELECT unique_key FROM jobs WHERE id = %s AND state IN ('failed', 'cancelled') "
            "FOR UPDATE",
            (job_id,),
        ).fetchone()
        if row is None:
            return None
        live = None if row[0] is None else self.find_live_unique(str(row[0]))
        if live is not None:
            raise UniqueTaken(live)  # before any write: the job stays as it was
        try:
            with self._savepoint():
                self._keep_final_attempts([job_id], ["failed", "cancelled"])
                return self._start_round(job_id, now)
        except errors.UniqueViolation:
            # An equal job committed by another node since the check above.
            live = None if row[0] is None else self.find_live_unique(str(row[0]))
            if live is None:
                raise
            raise UniqueTaken(live) from None

    def _start_round(self, job_id: int, now: float) -> JobInfo | None:
        row = self._write(
            "UPDATE jobs SET state = 'queued', run_at = %s, finished_at = NULL, reason = NULL, "
            "result = NULL, attempts = 0, round = round + 1, outcome = NULL, worker_pid = NULL "
            f"WHERE id = %s AND state IN ('failed', 'cancelled') RETURNING {COLUMNS}",
            (now, job_id),
        ).fetchone()
        return None if row is None else row_to_job(row)

    def set_waiting(self, job_ids: Sequence[int]) -> None:
        self._keep_final_attempts(job_ids, ["cancelled"])
        self._write(
            "UPDATE jobs SET state = 'waiting', finished_at = NULL, reason = NULL, "
            "outcome = NULL, worker_pid = NULL WHERE id = ANY(%s) AND state = 'cancelled'",
            (list(job_ids),),
        )

    def release_link(self, job_id: int, params: list[Any], now: float) -> JobInfo | None:
        row = self._write(
            "UPDATE jobs SET state = 'queued', params = %s, run_at = %s "
            f"WHERE id = %s AND state = 'waiting' RETURNING {COLUMNS}",
            (encode(params), now, job_id),
        ).fetchone()
        return None if row is None else row_to_job(row)

    # the shared queue ------------------------------------------------------------------------

    def claim_next(
        self,
        owner: str,
        worker_pid: int | None,
        now: float,
        limits: Mapping[str, int],
        rates: Mapping[str, Rate] | None = None,
        *,
        queue: str = DEFAULT_QUEUE,
    ) -> JobInfo | None:
        """The first queued job, its row locked (`SKIP LOCKED`: another claimer's rows are
        passed over, never waited for). A limited class is counted under a transaction-level
        advisory lock of that class, in a statement after the lock (READ COMMITTED: its
        snapshot then holds the last holder's commit): without it, two nodes could each
        count one slot free in their own snapshot and both take it. The lock is only tried
        (`pg_try_advisory_xact_lock`): a node that cannot have it passes over that class
        for this claim, as over a locked row, because waiting for it while holding another
        class's lock (one transaction claims several jobs) could deadlock two nodes.
        Limits and rates count per (class, limit key), each such group with a lock of its
        own."""
        self._begin()
        rates = rates or {}
        full = self._held_back(limits, rates, now)
        while True:
            # The pauses are read by this statement itself (`_NOT_PAUSED`): a pause
            # committed before it began holds, with no round trip of its own.
            row = self._read(
                "SELECT id, class_name, limit_key FROM jobs WHERE queue = %s AND state = 'queued' "
                f"AND NOT oneshot AND {_NOT_PAUSED} "
                "AND NOT EXISTS (SELECT FROM unnest(%s::text[], %s::text[]) "
                "AS held (class_name, limit_key) WHERE held.class_name = jobs.class_name "
                "AND held.limit_key = jobs.limit_key) "
                "ORDER BY priority, run_at, id LIMIT 1 FOR UPDATE SKIP LOCKED",
                (queue, [name for name, _ in full], [key for _, key in full]),
            ).fetchone()
            if row is None:
                return None
            job_id, class_name, key = int(row[0]), str(row[1]), str(row[2])
            limit, rate = limits.get(class_name), rates.get(class_name)
            if (limit is not None or rate is not None) and not self._slot_free(
                class_name, key, limit, rate, now
            ):
                # The row stays locked until the commit: claimers of that group skip it,
                # and it is not theirs to run now anyway.
                full.append((class_name, key))
                continue
            job = self._start(_CLAIM_QUEUED, (now, worker_pid, owner, job_id))
            if job is not None and rate is not None:
                self._count_start(job_id, rate, now)
            return job

    def claim_batch(
        self,
        owner: str,
        worker_pids: Sequence[int],
        now: float,
        limits: Mapping[str, int],
        rates: Mapping[str, Rate] | None = None,
        *,
        queue: str = DEFAULT_QUEUE,
    ) -> list[JobInfo]:
        """Several workers' jobs (or one's) in one statement whatever their number: the
        first queued jobs (as `claim_next` orders them, its pauses read by the statement
        itself, rows locked by other claimers skipped), each claimed for a worker in turn.
        (A claim sends no notice: see the jobs table's triggers.) With any class limited or
        rated, the claims go one by one, each counting its class under its lock
        (`claim_next`). Kept for a redo as one claim per job, so that a lost transaction
        takes the same jobs again."""
        if limits or rates:
            return super().claim_batch(owner, worker_pids, now, limits, rates, queue=queue)
        if len(worker_pids) == 1:
            rows = self._write(_CLAIM_ONE, (now, worker_pids[0], owner, queue)).fetchall()
        else:
            args = (queue, len(worker_pids), now, list(worker_pids), owner)
            rows = sorted(self._write(_CLAIM_FIRST, args).fetchall(), key=lambda row: row[-1])
        self._kept.pop()
        return [self._kept_claim(row, owner, now) for row in rows]

    def _held_back(
        self, limits: Mapping[str, int], rates: Mapping[str, Rate], now: float
    ) -> list[tuple[str, str]]:
        """The (class, limit key) groups at their limit or their rate now (a first sieve,
        without locks)."""
        full: list[tuple[str, str]] = []
        if limits:
            counts = self._read(
                "SELECT class_name, limit_key, count(*) FROM jobs WHERE state = 'running' "
                "AND class_name = ANY(%s) GROUP BY class_name, limit_key",
                (list(limits),),
            )
            full += [(name, key) for name, key, running in counts if running >= limits[name]]
        for name, rate in rates.items():
            started = self._read(
                "SELECT limit_key, count(*) FROM starts WHERE class_name = %s "
                "AND started_at > %s GROUP BY limit_key",
                (name, ratewindow.window_start(rate, now)),
            )
            full += [(name, key) for key, count in started if count >= rate.starts]
        return full

    def _slot_free(
        self, class_name: str, key: str, limit: int | None, rate: Rate | None, now: float
    ) -> bool:
        locked = self._read(
            "SELECT pg_try_advisory_xact_lock(hashtext(%s), hashtext(%s))",
            (_CLASS_LOCK, _group_lock(class_name, key)),
        ).fetchone()
        if not (locked and locked[0]):
            return False
        if limit is not None:
            running = self._read(
                "SELECT count(*) FROM jobs WHERE state = 'running' AND class_name = %s "
                "AND limit_key = %s",
                (class_name, key),
            ).fetchone()
            if running is None or int(running[0]) >= limit:
                return False
        if rate is not None:
            started = self._read(
                "SELECT count(*) FROM starts WHERE class_name = %s AND limit_key = %s "
                "AND started_at > %s",
                (class_name, key, ratewindow.window_start(rate, now)),
            ).fetchone()
            if started is None or int(started[0]) >= rate.starts:
                return False
        return True

    def next_rate_slot(
        self, rates: Mapping[str, Rate], now: float, job_id: int | None = None
    ) -> float | None:
        if not rates:
            return None
        if job_id is None:
            groups = self._read(
                "SELECT DISTINCT class_name, limit_key FROM jobs WHERE state = 'queued' "
                "AND NOT oneshot AND class_name = ANY(%s)",
                (list(rates),),
            ).fetchall()
        else:
            groups = self._read(
                "SELECT class_name, limit_key FROM jobs WHERE id = %s "
                "AND state IN ('queued', 'scheduled') AND class_name = ANY(%s)",
                (job_id, list(rates)),
            ).fetchall()
        slots = []
        for name, key in groups:
            rate = rates[name]
            started = self._read(
                "SELECT started_at FROM starts WHERE class_name = %s AND limit_key = %s "
                "AND started_at > %s ORDER BY started_at",
                (name, key, ratewindow.window_start(rate, now)),
            )
            slot = ratewindow.next_slot(rate, [float(at) for (at,) in started])
            if slot is not None:
                slots.append(slot)
        return min(slots, default=None)

    def rate_use(self, rates: Mapping[str, Rate], now: float) -> list[RateUse]:
        uses = []
        for name, rate in rates.items():
            since = ratewindow.window_start(rate, now)
            groups = [
                (str(key), int(started), float(oldest))
                for key, started, oldest in self._read(
                    "SELECT limit_key, count(*), min(started_at) FROM starts "
                    "WHERE class_name = %s AND started_at > %s GROUP BY limit_key",
                    (name, since),
                )
            ]
            held = 0
            if any(started >= rate.starts for _, started, _ in groups):
                row = self._read(
                    "SELECT count(*) FROM (SELECT 1 FROM jobs WHERE state = 'queued' "
                    "AND NOT oneshot AND class_name = %s AND limit_key IN (SELECT limit_key "
                    "FROM starts WHERE class_name = %s AND started_at > %s GROUP BY limit_key "
                    "HAVING count(*) >= %s) LIMIT %s) AS held",
                    (name, name, since, rate.starts, HELD_COUNT_CAP),
                ).fetchone()
                held = 0 if row is None else int(row[0])
            uses.append(
                ratewindow.use_of(
                    name, rate, groups, held, functools.partial(self._starts_since, name, since)
                )
            )
        return uses

    def _starts_since(self, class_name: str, since: float, key: str) -> list[float]:
        rows = self._read(
            "SELECT started_at FROM starts WHERE class_name = %s AND limit_key = %s "
            "AND started_at > %s ORDER BY started_at",
            (class_name, key, since),
        )
        return [float(at) for (at,) in rows]

    def forget_starts(self, rates: Mapping[str, Rate], now: float, limit: int) -> int:
        cutoffs, otherwise = ratewindow.forget_cutoffs(rates, now)
        cutoff = "%s::double precision"
        if cutoffs:
            whens = " ".join("WHEN %s THEN %s::double precision" for _ in cutoffs)
            cutoff = f"CASE class_name {whens} ELSE %s::double precision END"
        args = [value for pair in cutoffs for value in pair]
        deleted = self._write(
            "DELETE FROM starts WHERE ctid = ANY(ARRAY(SELECT ctid FROM starts "
            f"WHERE started_at <= {cutoff} LIMIT %s))",
            (*args, otherwise, limit),
        )
        return max(deleted.rowcount, 0)

    def promote_due(self, now: float) -> list[int]:
        # NaN sorts above every number in PostgreSQL: a job due at NaN is due at once.
        # SKIP LOCKED: rows another node is promoting are its to queue. Waiting for them
        # would deadlock two nodes that lock the same rows in another order, for the
        # server's deadlock_timeout (1 s) before one of them is aborted.
        rows = self._write(
            "UPDATE jobs SET state = 'queued' WHERE id IN (SELECT id FROM jobs "
            "WHERE state = 'scheduled' AND NOT oneshot AND (run_at <= %s OR run_at = 'NaN') "
            "ORDER BY id FOR UPDATE SKIP LOCKED) RETURNING id",
            (now,),
        ).fetchall()
        return sorted(int(job_id) for (job_id,) in rows)

    def next_due(self) -> float | None:
        row = self._read(
            "SELECT run_at FROM jobs WHERE state = 'scheduled' AND NOT oneshot "
            "ORDER BY run_at, id LIMIT 1"
        ).fetchone()
        return None if row is None else float(row[0])

    def queued_in_order(self, limit: int, queue: str | None = None) -> list[WaitingEntry]:
        names = [queue] if queue is not None else self._queues_with_jobs()
        entries: list[WaitingEntry] = []
        for name in names:
            rows = self._read(
                "SELECT run_at, id, priority, class_name FROM jobs WHERE queue = %s "
                "AND state = 'queued' AND NOT oneshot ORDER BY priority, run_at, id LIMIT %s",
                (name, limit),
            )
            entries.extend(WaitingEntry(*row) for row in rows)
        return in_claim_order(entries, limit) if len(names) > 1 else entries

    def _queues_with_jobs(self) -> list[str]:
        """The queues that have queued jobs: one index seek each, not a scan."""
        names: list[str] = []
        while True:
            row = self._read(
                "SELECT min(queue) FROM jobs WHERE state = 'queued' AND NOT oneshot AND queue > %s",
                (names[-1] if names else "",),
            ).fetchone()
            if row is None or row[0] is None:
                return names
            names.append(str(row[0]))

    def queued_per_queue(self) -> dict[str, int]:
        rows = self._read(
            "SELECT queue, count(*) FROM jobs WHERE state = 'queued' AND NOT oneshot GROUP BY queue"
        )
        return {str(name): int(count) for name, count in rows}

    def attempt_is_current(
        self, job_id: int, owner: str, number: int, round_number: int | None = None
    ) -> bool:
        # The row locked: no reclaim can end the attempt between this check and the commit.
        row = self._write(
            f"SELECT 1 FROM jobs WHERE id = %s {_FENCE} FOR UPDATE",
            (job_id, owner, number, round_number, round_number),
        ).fetchone()
        return row is not None

    def request_cancel(self, job_id: int, reason: str) -> str | None:
        row = self._write(
            "UPDATE jobs SET cancel_reason = %s WHERE id = %s AND state = 'running' "
            "RETURNING owner",
            (reason, job_id),
        ).fetchone()
        return None if row is None else str(row[0])

    def cancel_requests(self, owner: str) -> list[tuple[int, str]]:
        rows = self._read(
            "SELECT id, cancel_reason FROM jobs WHERE owner = %s AND cancel_reason IS NOT NULL "
            "AND state = 'running' ORDER BY id",
            (owner,),
        )
        return [(int(job_id), str(reason)) for job_id, reason in rows]

    pushes_notices = True

    def changed(self) -> bool:
        """Whether another connection committed a change of jobs since the last call: the
        notices on the schema's channel (the jobs table's triggers send one at each commit
        that stores a job, makes one queued or scheduled, or asks a running one to cancel),
        less this connection's own. The server sends them between transactions only:
        inside one, this tells nothing new until the commit."""
        if not self.in_transaction:
            # A round trip that reads no table: the server sends the notices waiting before
            # its answer (`_heard` takes them). Offline, it reconnects when it is time to
            # try (or raises StoreOffline). It also finds an idle node's tables dropped.
            row = self._read("SELECT to_regclass('jobs') IS NOT NULL").fetchone()
            if row is not None and not row[0]:
                raise self._gone("its jobs table is missing")
        return self._take_news()

    def notice_socket(self) -> int | None:
        if self.offline is not None or self._db.closed or self._db.broken:
            return None
        return self._db.fileno()

    def read_notices(self) -> bool:
        """The notices an idle connection was sent (the server pushes them as other
        sessions commit), read from the socket without a statement."""
        if self.offline is not None or self._db.closed:
            return self._take_news()
        pgconn = self._db.pgconn
        try:
            pgconn.consume_input()
        except psycopg.Error as exc:
            raise self._lost(exc) from exc
        mine = self._db.info.backend_pid
        while (notice := pgconn.notifies()) is not None:
            if notice.be_pid != mine:
                self._news = True
        return self._take_news()

    def _heard(self, mine: int, notice: psycopg.Notify) -> None:
        """A notice read while a statement was answered on the connection whose server
        process is `mine` (psycopg hands each over here)."""
        if notice.pid != mine:
            self._news = True
            if self.on_news is not None:
                self.on_news()

    def _take_news(self) -> bool:
        if self._reconnected:
            # Whatever was committed while this node could not listen is unknown: news.
            self._reconnected = False
            self._news = False
            return True
        news, self._news = self._news, False
        return news

    # pauses ---------------------------------------------------------------------------------

    def pause(self, kind: PauseKind, name: str, now: float) -> bool:
        row = self._write(
            "INSERT INTO pauses (kind, name, since) VALUES (%s, %s, %s) "
            "ON CONFLICT (kind, name) DO NOTHING RETURNING kind",
            (kind.value, name, now),
        ).fetchone()
        return row is not None

    def resume(self, kind: PauseKind, name: str) -> bool:
        row = self._write(
            "DELETE FROM pauses WHERE kind = %s AND name = %s RETURNING kind", (kind.value, name)
        ).fetchone()
        return row is not None

    def pauses(self) -> list[PauseInfo]:
        return pause_infos(self._read("SELECT kind, name, since FROM pauses ORDER BY kind, name"))

    def any_paused(self) -> bool:
        row = self._read("SELECT EXISTS (SELECT 1 FROM pauses)").fetchone()
        return row is not None and bool(row[0])

    # bulk actions ----------------------------------------------------------------------------

    def matching_ids(self, query: JobQuery, after: int, limit: int) -> list[int]:
        where, args = _filters(query)
        where = f"{where} AND id > %s" if where else "WHERE id > %s"
        rows = self._read(
            f"SELECT id FROM jobs {where} ORDER BY id LIMIT %s", (*args, after, limit)
        )
        return [int(job_id) for (job_id,) in rows]

    # nodes ---------------------------------------------------------------------------------

    def clock(self) -> float:
        row = self._read("SELECT extract(epoch FROM clock_timestamp())::double precision")
        found = row.fetchone()
        assert found is not None
        return float(found[0])

    def register_node(self, node: NodeInfo) -> NodeInfo | None:
        # One statement: of two processes registering a name at once, the second waits for
        # the first's row and then finds it live.
        row = self._write(
            "INSERT INTO nodes (name, host, pid, address, started_at, heartbeat_at, "
            "lease_until, workers_busy, workers_total) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s) "
            "ON CONFLICT (name) DO UPDATE SET host = EXCLUDED.host, pid = EXCLUDED.pid, "
            "address = EXCLUDED.address, started_at = EXCLUDED.started_at, "
            "heartbeat_at = EXCLUDED.heartbeat_at, lease_until = EXCLUDED.lease_until, "
            "workers_busy = EXCLUDED.workers_busy, workers_total = EXCLUDED.workers_total "
            "WHERE nodes.lease_until <= EXCLUDED.heartbeat_at "
            "OR (nodes.host = EXCLUDED.host AND nodes.pid = EXCLUDED.pid) RETURNING name",
            (
                node.name,
                node.host,
                node.pid,
                node.address,
                *_node_times(node),
                node.workers_busy,
                node.workers_total,
            ),
        ).fetchone()
        if row is not None:
            return None
        holders = self._nodes("WHERE name = %s", (node.name,))
        return holders[0] if holders else None

    def heartbeat(self, node: NodeInfo) -> bool:
        cursor = self._write(
            "UPDATE nodes SET heartbeat_at = %s, lease_until = %s, workers_busy = %s, "
            "workers_total = %s WHERE name = %s AND host = %s AND pid = %s AND started_at = %s",
            (
                node.heartbeat_at.timestamp(),
                node.lease_until.timestamp(),
                node.workers_busy,
                node.workers_total,
                node.name,
                node.host,
                node.pid,
                node.started_at.timestamp(),
            ),
        )
        return cursor.rowcount == 1

    def expire_nodes(self, now: float) -> list[str]:
        # Two nodes expiring at once: the second waits for the first's row locks, then
        # finds the rows gone (READ COMMITTED re-checks them): each name to one caller.
        rows = self._write(
            "DELETE FROM nodes WHERE lease_until < %s RETURNING name", (now,)
        ).fetchall()
        return sorted(str(name) for (name,) in rows)

    def orphan_owners(self) -> list[str]:
        rows = self._read(
            "SELECT DISTINCT owner FROM jobs WHERE state = 'running' AND NOT oneshot "
            "AND owner IS NOT NULL AND owner NOT IN (SELECT name FROM nodes) ORDER BY owner"
        )
        return [str(owner) for (owner,) in rows]

    def leave(self, node: NodeInfo) -> None:
        self._write(
            "DELETE FROM nodes WHERE name = %s AND host = %s AND pid = %s AND started_at = %s",
            (node.name, node.host, node.pid, node.started_at.timestamp()),
        )

    def nodes(self) -> list[NodeInfo]:
        return self._nodes("", ())

    def _nodes(self, where: str, args: Sequence[Any]) -> list[NodeInfo]:
        rows = self._read(
            "SELECT name, host, pid, address, started_at, heartbeat_at, lease_until, "
            f"workers_busy, workers_total FROM nodes {where} ORDER BY name",
            args,
        )
        return [
            NodeInfo(
                name=name,
                host=host,
                pid=pid,
                address=address,
                started_at=datetime.fromtimestamp(started, UTC),
                heartbeat_at=datetime.fromtimestamp(beat, UTC),
                lease_until=datetime.fromtimestamp(lease, UTC),
                workers_busy=busy,
                workers_total=total,
            )
            for name, host, pid, address, started, beat, lease, busy, total in rows
        ]

    # schedules and retention ---------------------------------------------------------------

    def latest_key(self, prefix: str) -> str | None:
        # The key's collation is "C" (code point order): the range reads the index backwards.
        end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        row = self._read(
            "SELECT idempotency_key FROM jobs WHERE idempotency_key >= %s "
            "AND idempotency_key < %s ORDER BY idempotency_key DESC LIMIT 1",
            (prefix, end),
        ).fetchone()
        return None if row is None else str(row[0])

    def prune(self, rules: PruneRules, limit: int, *, dry_run: bool = False) -> list[PrunedJob]:
        condition, args = self._prunable(rules)
        if not condition:
            return []
        # As SQLiteStore.prune: oldest first, a chain or a batch whole or not at all.
        rows = self._read(
            "SELECT id, state, chain_id, batch_id FROM jobs WHERE finished_at IS NOT NULL "
            f"AND {condition.format(t='jobs')} "
            "AND (chain_id IS NULL OR NOT EXISTS (SELECT 1 FROM jobs AS link "
            "WHERE link.chain_id = jobs.chain_id "
            f"AND NOT coalesce({condition.format(t='link')}, FALSE))) "
            "AND (batch_id IS NULL OR NOT EXISTS (SELECT 1 FROM jobs AS member "
            "WHERE member.batch_id = jobs.batch_id "
            f"AND NOT coalesce({condition.format(t='member')}, FALSE))) "
            "ORDER BY finished_at LIMIT %s",
            (*args, *args, *args, limit),
        ).fetchall()
        found = {int(job_id): JobState(state) for job_id, state, _, _ in rows}
        chains = sorted({int(chain) for _, _, chain, _ in rows if chain is not None})
        batches = sorted({int(batch) for _, _, _, batch in rows if batch is not None})
        together = self._read(
            "SELECT id, state FROM jobs WHERE chain_id = ANY(%s) OR batch_id = ANY(%s)",
            (chains, batches),
        )
        found.update((int(job_id), JobState(state)) for job_id, state in together)
        pruned = [PrunedJob(job_id, state) for job_id, state in found.items()]
        if pruned and not dry_run:
            # Attempts and outputs go with their job (ON DELETE CASCADE); counts by trigger.
            self._write("DELETE FROM jobs WHERE id = ANY(%s)", (list(found),))
        return pruned

    def _prunable(self, rules: PruneRules) -> tuple[str, list[Any]]:
        """The condition (on table alias `{t}`) that a job may go, and its arguments."""
        ages = list(rules.finished_before.items())
        terms = [f"({{t}}.state = '{state.value}' AND {{t}}.finished_at < %s)" for state, _ in ages]
        args: list[Any] = [before for _, before in ages]
        cutoff = self._count_cutoff(rules.max_finished)
        if cutoff is not None:
            terms.append("{t}.finished_at <= %s")
            args.append(cutoff)
        if not terms:
            return "", []
        condition = (
            "({t}.state = ANY(%s::text[]) AND (" + " OR ".join(terms) + ") AND "
            "({t}.idempotency_key IS NULL OR {t}.idempotency_key <> ALL(%s::text[])))"
        )
        return condition, [_FINAL, *args, sorted(rules.keep_keys)]

    def _count_cutoff(self, max_finished: int | None) -> float | None:
        """The finish time at or before which jobs are beyond the newest `max_finished`."""
        if max_finished is None:
            return None
        row = self._read(
            "SELECT finished_at FROM jobs WHERE finished_at IS NOT NULL "
            "AND state = ANY(%s::text[]) ORDER BY finished_at DESC LIMIT 1 OFFSET %s",
            (_FINAL, max_finished),
        ).fetchone()
        return None if row is None else float(row[0])

    def attempt_rows(self, job_ids: Sequence[int]) -> int:
        row = self._read(
            "SELECT count(*) FROM attempts WHERE job_id = ANY(%s)", (list(job_ids),)
        ).fetchone()
        return 0 if row is None else int(row[0])

    # outputs -------------------------------------------------------------------------------

    def keep_output(self, job_id: int, attempt: int, output: AttemptOutput) -> None:
        self._write(
            "INSERT INTO outputs (job_id, round, attempt, printed, origin, tail) "
            "SELECT id, round, %s, %s, %s, %s FROM jobs WHERE id = %s "
            "ON CONFLICT (job_id, round, attempt) DO UPDATE SET printed = EXCLUDED.printed, "
            "origin = EXCLUDED.origin, tail = EXCLUDED.tail",
            (attempt, output.printed, output.origin, output.tail, job_id),
        )

    def output_origins(self, job_id: int) -> set[str]:
        rows = self._read("SELECT DISTINCT origin FROM outputs WHERE job_id = %s", (job_id,))
        return {str(origin) for (origin,) in rows}

    def stored_outputs(self, job_id: int) -> list[StoredOutput]:
        rows = self._read(
            "SELECT round, attempt, printed, origin, tail FROM outputs WHERE job_id = %s "
            "ORDER BY round, attempt",
            (job_id,),
        )
        return [
            StoredOutput(round_, attempt, AttemptOutput(bytes(tail), printed, origin))
            for round_, attempt, printed, origin, tail in rows
        ]


def _node_times(node: NodeInfo) -> tuple[float, float, float]:
    return (
        node.started_at.timestamp(),
        node.heartbeat_at.timestamp(),
        node.lease_until.timestamp(),
    )


def _filters(query: JobQuery) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    args: list[Any] = []
    if query.states:
        clauses.append("state = ANY(%s::text[])")
        args.append([state.value for state in query.states])
    if query.class_name:
        clauses.append("class_name = %s")
        args.append(query.class_name)
    if query.queue:
        clauses.append("queue = %s")
        args.append(query.queue)
    if query.search:
        # A byte search in the msgpack params, as SQLite's instr: `%` and `_` are plain text.
        needle = query.search.strip().encode("utf-8", "backslashreplace")
        if needle.isascii() and needle.isdigit() and len(needle) <= 18:
            clauses.append("(id = %s OR position(%s::bytea in params) > 0)")
            args.extend([int(needle), needle])
        else:
            clauses.append("position(%s::bytea in params) > 0")
            args.append(needle)
    return ("WHERE " + " AND ".join(clauses) if clauses else ""), args


def _group_lock(class_name: str, limit_key: str) -> str:
    """What names the advisory lock of a class's group: the class alone when its limits
    count the whole class (as before limit keys), else the class and the key."""
    return f"{class_name}/{limit_key}" if limit_key else class_name


def _status(db: psycopg.Connection[Any]) -> TransactionStatus:
    """The connection's transaction status now (read again after a statement)."""
    return db.info.transaction_status


def _is_disconnect(exc: BaseException) -> bool:
    state = getattr(exc, "sqlstate", None) or ""
    if not state and isinstance(exc, psycopg.OperationalError):
        # The client's own failure to talk to the server (reading, sending, a pipeline left
        # busy by a session the server ended mid-way: "cannot exit pipeline mode while
        # busy"), before psycopg may have marked the connection broken: what the server
        # did with the statements is unknown, so the connection is given up.
        return True
    return state.startswith(_DISCONNECTS)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
