"""The embedded store: one SQLite database in WAL mode, `<storage>/bgjobs.db`.

With `fsync = false` (the default) a commit reaches the operating system before it returns
(synchronous=NORMAL): it survives the death of any process. `fsync = true` makes every
commit wait for the disk (synchronous=FULL), so it survives power loss too.

A failed COMMIT is not the end of the writes in it. In WAL mode SQLite answers SQLITE_FULL
at COMMIT by rolling the whole transaction back (tried on a full tmpfs: the transaction is
gone, a second COMMIT finds none), yet the daemon has already acted on its claims and
attempt outcomes. So every write of the open transaction is also kept in a list, and
`redo_kept_writes()` replays them in a new transaction after such a rollback, leaving out
the submits (`add`), whose clients are told their jobs were not stored.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from bgjobd.store import ratewindow
from bgjobd.store.base import (
    HELD_COUNT_CAP,
    AttemptOutput,
    FinishedAttempt,
    JobQuery,
    KeyTaken,
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
from bgjobd.store.pauses import NOTHING_HELD, held_back, pause_infos
from bgjobd.store.rows import COLUMNS as _COLUMNS
from bgjobd.store.rows import decode_error as _decode_error
from bgjobd.store.rows import encode as _encode
from bgjobd.store.rows import final_attempt as _final_attempt
from bgjobd.store.rows import row_to_job as _row_to_job
from bgjobd.store.rows import running_attempt as _running_attempt
from bgjobd.store.rows import time_of as _time
from bgjobs.model import (
    DEFAULT_QUEUE,
    FINAL_STATES,
    LIVE_STATES,
    AttemptInfo,
    JobInfo,
    JobState,
    NodeInfo,
    Outcome,
    PauseInfo,
    PauseKind,
)
from bgjobs.rates import Rate

COMMIT_WITHIN_SECONDS: Final = 0.002
"""The journal commits claims and attempts' ends within this: the database's one write
lock is held meanwhile (`run_job.py`, `bgjobctl` wait for it)."""

_LIVE: Final = ", ".join(f"'{state.value}'" for state in sorted(LIVE_STATES))
_FINAL: Final = ", ".join(f"'{state.value}'" for state in sorted(FINAL_STATES))
SCHEMA: Final = Path(__file__).with_name("schema.sql")
SCHEMA_VERSION: Final = 8
_ADDED_COLUMNS: Final = (
    ("jobs", "outcome", "TEXT"),
    ("jobs", "idempotency_key", "TEXT"),
    ("jobs", "trace", "BLOB"),
    ("jobs", "batch_id", "INTEGER"),
    ("jobs", "batch_on_failure", "INTEGER"),
    ("jobs", "cancel_reason", "TEXT"),
    ("attempts", "node", "TEXT"),
    ("jobs", "limit_key", "TEXT NOT NULL DEFAULT ''"),
    ("jobs", "queue", "TEXT NOT NULL DEFAULT 'default'"),
)
"""Columns added since schema 1, in order, with their tables and types (see `_upgrade`)."""
_BUSY_TIMEOUT_MS: Final = 10_000
_IDS_PER_STATEMENT: Final = 500
"""Job ids bound in one `IN (...)`: under SQLite's limit of bound variables."""
_CONTENDED_BEGIN_SECONDS: Final = 0.0005
"""A BEGIN IMMEDIATE that waited longer than this met another process's write lock (the
uncontended one takes a few µs): from then on the store waits for the lock in short steps
of its own (see `_begin_immediate`)."""
_LOCK_POLL_SECONDS: Final = (0.00005, 0.0001, 0.0002, 0.0005, 0.001)
"""The waits between tries for a write lock another process holds, then the last one
repeated. SQLite's own busy handler sleeps 1, 2, 5, 10, 15, 20, 25... ms, so a lock freed
just after a try is noticed up to that step late, and the event loop waits meanwhile."""
_TRUNCATE_WAIT_MS: Final = 1_000
_CHECKPOINT_SECONDS: Final = 0.5
_CHECKPOINT_BACKOFF_MAX: Final = 5.0


def _placeholders(count: int) -> str:
    return ",".join("?" * count)


_INSERTED: Final = (
    "class_name, method, params, priority, state, run_at, max_attempts, timeout, created_at, "
    "owner, chain_id, chain_position, chain_length, unique_key, oneshot, attempts, "
    "started_at, worker_pid, idempotency_key, trace, batch_id, batch_on_failure, limit_key, "
    "queue"
)
_INSERTED_COUNT: Final = _INSERTED.count(",") + 1
_INSERT_ONE: Final = f"INSERT INTO jobs ({_INSERTED}) VALUES ({_placeholders(_INSERTED_COUNT)})"
ADD_EACH_ROWS: Final = 32766 // _INSERTED_COUNT // 2
"""Rows per INSERT of `add_each`: well within SQLite's limit on a statement's parameters."""


def _inserted_values(link: NewJob, first_id: int | None, batch: bool) -> tuple[Any, ...]:
    """A row's values, in the order of _INSERTED."""
    return (
        link.class_name,
        link.method,
        _encode(link.params),
        link.priority.rank,
        link.state.value,
        link.run_at,
        link.max_attempts,
        link.timeout,
        link.created_at,
        link.owner,
        None if batch else first_id,
        link.chain_position,
        link.chain_length,
        link.unique_key,
        int(link.oneshot),
        1 if link.state is JobState.RUNNING else 0,
        link.started_at,
        link.worker_pid,
        link.key,
        None if link.trace is None else _encode(link.trace),
        first_id if batch else None,
        int(link.run_callback_on_failure) if link.batch_callback else None,
        link.limit_key,
        link.queue,
    )


def is_busy(exc: BaseException) -> bool:
    """Whether an SQLite error means another process held the lock past the wait."""
    return getattr(exc, "sqlite_errorcode", None) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


def _pairs(count: int) -> str:
    return ",".join(["(?,?)"] * count)


def is_full(exc: BaseException) -> bool:
    """Whether an SQLite error means the disk (or its quota) is full."""
    return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL


class _Checkpointer(threading.Thread):
    """Copies the WAL into the database on its own thread and connection. Left to SQLite,
    a checkpoint would run inside some commit on the event loop and stall it for
    milliseconds (it syncs the database file).

    A failing checkpoint (a full disk: the database file cannot grow) must not end the
    thread, or the WAL would grow for ever once space returns: it reports the first failure,
    backs off, reconnects and tries again, and reports when it works again."""

    def __init__(self, path: Path, on_error: Callable[[str], None] | None) -> None:
        super().__init__(name="sqlite-checkpoint", daemon=True)
        self._path = path
        self._on_error = on_error
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._last_error = ""
        self.failures = 0
        """Checkpoints failed in a row (0: the last one worked)."""

    def run(self) -> None:
        db: sqlite3.Connection | None = None
        pause = _CHECKPOINT_SECONDS
        while True:
            self._wake.wait(pause)
            self._wake.clear()
            if self._stopping.is_set():
                break
            try:
                if db is None:
                    db = self._connect()
                db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            except Exception as exc:  # noqa: BLE001  # any failure: report, back off, retry
                self._failed(exc)
                if db is not None:
                    db.close()
                    db = None
                pause = min(pause * 2, _CHECKPOINT_BACKOFF_MAX)
                continue
            if self.failures:
                self._report(f"WAL checkpoints work again after {self.failures} failure(s)")
                self.failures = 0
            pause = _CHECKPOINT_SECONDS
        if db is not None:
            db.close()

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        db.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        return db

    def _failed(self, exc: Exception) -> None:
        self.failures += 1
        if self.failures == 1 or str(exc) != self._last_error:
            self._report(f"WAL checkpoint failed, retrying with backoff: {exc}")
        self._last_error = str(exc)

    def _report(self, message: str) -> None:
        if self._on_error is not None:
            self._on_error(message)

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        self.join()


class SQLiteStore(Store):
    def __init__(
        self,
        path: Path,
        *,
        fsync: bool = False,
        background_checkpoints: bool = False,
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._kept: list[tuple[str, Sequence[Any]]] = []
        """The open transaction's writes other than submits, to redo after a rollback."""
        self._kept_or_submitted = False
        """Whether the open transaction holds any write (kept or a submit's)."""
        self._contended = False
        """Whether a write lock was ever found taken by another process."""
        self._pauses_seen_at: int | None = None
        """The data_version at which `_paused` was read (None: read it again)."""
        self._paused = False
        self.rollbacks = 0
        """How many times SQLite rolled the open transaction back under a failing statement
        (the kept writes were redone, the submits' were lost): a submit made before the
        count changed was not stored."""
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        deadline = time.monotonic() + _BUSY_TIMEOUT_MS / 1000
        while True:
            try:
                self._prepare(fsync)
                break
            except sqlite3.OperationalError as exc:
                # Another process making the same new store: switching to WAL, or a schema
                # statement whose read snapshot went stale, meets "locked" at once, without
                # the busy wait. Every step is idempotent: again, until the wait is over.
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                if self._db.in_transaction:
                    self._db.rollback()
                time.sleep(0.01)
        self.on_begin: Callable[[], None] | None = None
        self.commit_within = COMMIT_WITHIN_SECONDS
        self._checkpointer: _Checkpointer | None = None
        if background_checkpoints:
            self._db.execute("PRAGMA wal_autocheckpoint = 0")
            self._checkpointer = _Checkpointer(path, on_error)
            self._checkpointer.start()

    def _prepare(self, fsync: bool) -> None:
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute(f"PRAGMA synchronous = {'FULL' if fsync else 'NORMAL'}")
        self._db.execute("PRAGMA foreign_keys = ON")
        self._db.executescript(SCHEMA.read_text())
        self._upgrade()

    @classmethod
    def reader(cls, path: Path) -> SQLiteStore:
        """The store opened read-only, for a client looking up its own job (no schema
        written, no lock taken: a paused daemon's write lock does not stop it).
        sqlite3.OperationalError if there is no store yet."""
        store = cls.__new__(cls)
        store.path = path
        store._db = sqlite3.connect(
            f"{path.as_uri()}?mode=ro", uri=True, isolation_level=None, check_same_thread=False
        )
        store._db.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        store.on_begin = None
        store._checkpointer = None
        store._contended = False
        return store

    def _upgrade(self) -> None:
        """An older database gains the columns it lacks (schema 1: jobs.outcome; 2:
        jobs.idempotency_key; 3: jobs.trace; 4: the batch columns): ALTERs, which copy
        nothing. Then the indexes on added columns (jobs_by_key, jobs_batch)."""
        if self._missing_columns():
            self._db.execute("BEGIN IMMEDIATE")  # another process may be upgrading it too
            try:
                for table, column, kind in self._missing_columns():
                    self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
                self._db.execute(
                    f"UPDATE meta SET value = '{SCHEMA_VERSION}' WHERE key = 'schema_version'"
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        self._db.execute(
            "CREATE UNIQUE INDEX IF NOT EXISTS jobs_by_key ON jobs (idempotency_key) "
            "WHERE idempotency_key IS NOT NULL"
        )
        self._db.execute(
            "CREATE INDEX IF NOT EXISTS jobs_batch ON jobs (batch_id, state) "
            "WHERE batch_id IS NOT NULL"
        )
        self._db.execute(
            "CREATE INDEX IF NOT EXISTS jobs_cancelling ON jobs (owner) "
            "WHERE cancel_reason IS NOT NULL AND state = 'running'"
        )
        # Schema 5's plain index on live unique keys becomes a constraint: racing submits
        # from any processes store one job. (The claims' jobs_ready_in_queue replaces
        # jobs_queued and schema 6's jobs_ready, which had no queue.)
        self._db.execute("DROP INDEX IF EXISTS jobs_unique")
        self._db.execute("DROP INDEX IF EXISTS jobs_queued")
        self._db.execute("DROP INDEX IF EXISTS jobs_ready")
        self._db.execute(
            "CREATE INDEX IF NOT EXISTS jobs_ready_in_queue ON jobs (queue, priority, run_at, id) "
            "WHERE state = 'queued' AND oneshot = 0"
        )
        self._db.execute(
            f"CREATE UNIQUE INDEX IF NOT EXISTS jobs_unique_live ON jobs (unique_key) "
            f"WHERE unique_key IS NOT NULL AND state IN ({_LIVE})"
        )

    def _missing_columns(self) -> list[tuple[str, str, str]]:
        present = {
            (table, row[1])
            for table in ("jobs", "attempts")
            for row in self._db.execute(f"PRAGMA table_info({table})")
        }
        return [added for added in _ADDED_COLUMNS if added[:2] not in present]

    # transactions ------------------------------------------------------------------------

    def _write(self, sql: str, args: Sequence[Any] = (), *, submit: bool = False) -> sqlite3.Cursor:
        if not self._db.in_transaction:
            self._begin_immediate()
            if self.on_begin is not None:
                self.on_begin()
        try:
            cursor = self._db.execute(sql, args)
        except sqlite3.Error:
            if not self._db.in_transaction and self._kept_or_submitted:
                # SQLite gave up the whole transaction (a full disk while spilling pages).
                self._kept_or_submitted = False
                self.rollbacks += 1
                self.redo_kept_writes()
            raise
        self._kept_or_submitted = True
        if not submit:
            self._kept.append((sql, args))
        return cursor

    def _begin_immediate(self) -> None:
        """Take the write lock. Alone on the store that is SQLite's BEGIN IMMEDIATE with
        its busy timeout; once another process's lock was met (several nodes on one
        store), the lock is tried without SQLite's coarse busy waits and again after a
        short wait of our own, up to the same timeout: the caller (the event loop's thread)
        goes on within a fraction of a millisecond of the other's commit."""
        if not self._contended:
            started = time.perf_counter()
            self._db.execute("BEGIN IMMEDIATE")
            self._contended = time.perf_counter() - started > _CONTENDED_BEGIN_SECONDS
            return
        self._db.execute("PRAGMA busy_timeout = 0")
        try:
            deadline = time.monotonic() + _BUSY_TIMEOUT_MS / 1000
            for attempt in itertools.count():
                try:
                    self._db.execute("BEGIN IMMEDIATE")
                    return
                except sqlite3.OperationalError as exc:
                    if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                        raise
                time.sleep(_LOCK_POLL_SECONDS[min(attempt, len(_LOCK_POLL_SECONDS) - 1)])
        finally:
            self._db.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")

    def commit(self) -> None:
        if self._db.in_transaction:
            self._db.execute("COMMIT")
        self._forget()

    def rollback(self) -> None:
        if self._db.in_transaction:
            self._db.execute("ROLLBACK")
        self._forget()
        self._pauses_seen_at = None  # a pause or resume of this transaction is undone

    def _forget(self) -> None:
        self._kept = []
        self._kept_or_submitted = False

    def redo_kept_writes(self) -> int:
        """After a failed commit: roll back what is left of the transaction and redo its
        writes in a new one, except the submits. They are replayed in order from the same
        state, so they give the same results the daemon already acted on. Returns how many
        were redone."""
        kept = self._kept
        self.rollback()
        if not kept:
            return 0
        self._begin_immediate()
        try:
            for sql, args in kept:
                self._db.execute(sql, args)
        except BaseException:
            self.rollback()
            raise
        self._kept = kept
        self._kept_or_submitted = True
        return len(kept)

    @property
    def in_transaction(self) -> bool:
        return self._db.in_transaction

    def quick_check(self) -> list[str]:
        """SQLite's `quick_check`: an empty list, or what is wrong with the database."""
        rows = [str(row[0]) for row in self._db.execute("PRAGMA quick_check")]
        return [] if rows == ["ok"] else rows

    def checkpoint_soon(self) -> None:
        """Checkpoint now rather than within the half second. Short of space this keeps the
        WAL small: it restarts from its beginning only after a checkpoint, and until then
        every commit makes it grow."""
        if self._checkpointer is not None:
            self._checkpointer.wake()

    def checkpoint_failures(self) -> int:
        return 0 if self._checkpointer is None else self._checkpointer.failures

    def close(self) -> None:
        self.rollback()
        if self._checkpointer is not None:
            self._checkpointer.stop()
            with contextlib.suppress(sqlite3.Error):  # a full disk: the WAL simply stays
                self._db.execute("PRAGMA wal_checkpoint(PASSIVE)")
        self._db.close()

    # submitting ----------------------------------------------------------------------------

    def add(self, links: Sequence[NewJob]) -> list[int]:
        ids: list[int] = []
        for link in links:
            try:
                ids.append(self._insert(link, ids[0] if ids else None, links[0].batch_callback))
            except sqlite3.IntegrityError:
                if ids:  # all or nothing: the links stored before this one go again
                    self._write(
                        f"DELETE FROM jobs WHERE id IN ({_placeholders(len(ids))})",
                        ids,
                        submit=True,
                    )
                # The first link's idempotency key is stored already, or an equal unique job
                # is live (a unique index said so; this statement alone was undone, the
                # transaction goes on).
                found = None if link.key is None else self.find_by_key(link.key)
                if found is not None and link.key is not None:
                    raise KeyTaken(link.key, found) from None
                live = None if link.unique_key is None else self.find_live_unique(link.unique_key)
                if live is not None:
                    raise UniqueTaken(live) from None
                raise
        if links and links[0].batch_callback:
            # The callback's id names the batch; its members were stored with it.
            self._write("UPDATE jobs SET batch_id = ? WHERE id = ?", (ids[0], ids[0]), submit=True)
        elif len(links) > 1:
            self._write("UPDATE jobs SET chain_id = ? WHERE id = ?", (ids[0], ids[0]), submit=True)
        return ids

    def _insert(self, link: NewJob, first_id: int | None, batch: bool) -> int:
        """`first_id`: the first row's id, once it is stored: the chain's id, or in a batch
        (the first row is the callback) the batch's."""
        cursor = self._write(
            _INSERT_ONE,
            _inserted_values(link, first_id, batch),
            submit=True,
        )
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def add_each(self, jobs: Sequence[NewJob]) -> list[int] | None:
        # One statement per ADD_EACH_ROWS rows: a statement that meets a conflict is undone
        # alone, and the earlier ones are deleted again (all or none).
        ids: list[int] = []
        row = f"({_placeholders(_INSERTED_COUNT)})"
        for start in range(0, len(jobs), ADD_EACH_ROWS):
            part = jobs[start : start + ADD_EACH_ROWS]
            values = [value for job in part for value in _inserted_values(job, None, False)]
            try:
                stored = self._write(
                    f"INSERT INTO jobs ({_INSERTED}) VALUES {','.join([row] * len(part))} "
                    "RETURNING id",
                    values,
                    submit=True,
                ).fetchall()
            except sqlite3.IntegrityError:
                if ids:
                    self._write(
                        f"DELETE FROM jobs WHERE id IN ({_placeholders(len(ids))})",
                        ids,
                        submit=True,
                    )
                return None
            # Rows get ascending ids in the order of VALUES (RETURNING's own order is not
            # promised).
            ids += sorted(int(job_id) for (job_id,) in stored)
        return ids

    def find_by_key(self, key: str) -> list[int] | None:
        row = self._db.execute(
            "SELECT id, chain_id FROM jobs WHERE idempotency_key = ?", (key,)
        ).fetchone()
        if row is None:
            return None
        if row[1] is None:
            return [int(row[0])]
        links = self._db.execute(
            "SELECT id FROM jobs WHERE chain_id = ? ORDER BY chain_position", (row[1],)
        )
        return [int(link_id) for (link_id,) in links]

    def find_live_unique(self, unique_key: str) -> int | None:
        # The states are literals, as in the partial index's condition, so SQLite uses it.
        row = self._db.execute(
            f"SELECT id FROM jobs WHERE unique_key = ? AND state IN ({_LIVE}) ORDER BY id LIMIT 1",
            (unique_key,),
        ).fetchone()
        return None if row is None else int(row[0])

    # reading -------------------------------------------------------------------------------

    def get(self, job_id: int) -> JobInfo | None:
        row = self._db.execute(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            return None
        history = self._history(job_id)
        if row[5] == JobState.RUNNING.value:
            history.append(_running_attempt(row))
        elif row[23] is not None:
            history.append(_final_attempt(row))
        return _row_to_job(row, history)

    def _history(self, job_id: int) -> list[AttemptInfo]:
        rows = self._db.execute(
            "SELECT number, started_at, finished_at, outcome, worker_pid, error, duration, round, "
            "node FROM attempts WHERE job_id = ? ORDER BY seq",
            (job_id,),
        )
        return [
            AttemptInfo(
                number=number,
                started_at=datetime.fromtimestamp(started, UTC),
                finished_at=_time(finished),
                outcome=None if outcome is None else Outcome(outcome),
                worker_pid=pid,
                error=None if error is None else _decode_error(error),
                duration=duration,
                round=round_number,
                node=node or "",
            )
            for number, started, finished, outcome, pid, error, duration, round_number, node in rows
        ]

    def states_of(self, job_ids: Sequence[int]) -> dict[int, tuple[JobState, int]]:
        found: dict[int, tuple[JobState, int]] = {}
        for start in range(0, len(job_ids), _IDS_PER_STATEMENT):
            chunk = list(job_ids[start : start + _IDS_PER_STATEMENT])
            marks = ", ".join("?" * len(chunk))
            rows = self._db.execute(
                f"SELECT id, state, attempts FROM jobs WHERE id IN ({marks})", chunk
            )
            found.update((int(i), (JobState(state), int(n))) for i, state, n in rows)
        return found

    def search(self, query: JobQuery) -> tuple[list[JobInfo], int]:
        where, args = self._filters(query)
        order = "ASC" if query.oldest_first else "DESC"
        rows = self._db.execute(
            f"SELECT {_COLUMNS} FROM jobs {where} ORDER BY id {order} LIMIT ? OFFSET ?",
            (*args, query.limit, query.offset),
        ).fetchall()
        if not (query.class_name or query.search or query.queue):
            counts = self.counts()
            total = sum(counts[s] for s in query.states) if query.states else sum(counts.values())
        else:
            total = self._db.execute(f"SELECT count(*) FROM jobs {where}", args).fetchone()[0]
        return [_row_to_job(row) for row in rows], total

    @staticmethod
    def _filters(query: JobQuery) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        args: list[Any] = []
        if query.states:
            clauses.append(f"state IN ({_placeholders(len(query.states))})")
            args.extend(state.value for state in query.states)
        if query.class_name:
            clauses.append("class_name = ?")
            args.append(query.class_name)
        if query.queue:
            clauses.append("queue = ?")
            args.append(query.queue)
        if query.search:
            # instr, not LIKE: `%`, `_` and quotes are plain text. Only ASCII digits that fit
            # an SQLite integer are an id ('²'.isdigit() is true, int('²') fails); a lone
            # surrogate, which no UTF-8 text holds, is searched for escaped.
            needle = query.search.strip().encode("utf-8", "backslashreplace").decode("utf-8")
            if needle.isascii() and needle.isdigit() and len(needle) <= 18:
                clauses.append("(id = ? OR instr(params, CAST(? AS BLOB)) > 0)")
                args.extend([int(needle), needle])
            else:
                clauses.append("instr(params, CAST(? AS BLOB)) > 0")
                args.append(needle)
        return ("WHERE " + " AND ".join(clauses) if clauses else ""), args

    def counts(self) -> dict[JobState, int]:
        found = dict(self._db.execute("SELECT state, count FROM state_counts"))
        return {state: int(found.get(state.value, 0)) for state in JobState}

    def batch_members(self, batch_id: int) -> list[JobInfo]:
        rows = self._db.execute(
            f"SELECT {_COLUMNS} FROM jobs WHERE batch_id = ? AND id <> ? ORDER BY id",
            (batch_id, batch_id),
        )
        return [_row_to_job(row) for row in rows]

    def batch_pending(self, batch_id: int) -> bool:
        # One index entry is enough (not a count: that would cost a scan of the members
        # left at each end). The states are literals, as in `find_live_unique`.
        row = self._db.execute(
            f"SELECT 1 FROM jobs WHERE batch_id = ? AND state IN ({_LIVE}) AND id <> ? LIMIT 1",
            (batch_id, batch_id),
        ).fetchone()
        return row is not None

    def chain(self, chain_id: int) -> list[JobInfo]:
        rows = self._db.execute(
            f"SELECT {_COLUMNS} FROM jobs WHERE chain_id = ? ORDER BY chain_position",
            (chain_id,),
        )
        return [_row_to_job(row) for row in rows]

    def scheduled(self, after: tuple[float, int] | None, limit: int) -> list[WaitingEntry]:
        if after is None:
            rows = self._db.execute(
                "SELECT run_at, id, priority, class_name FROM jobs WHERE state = 'scheduled' "
                "AND oneshot = 0 ORDER BY run_at, id LIMIT ?",
                (limit,),
            )
        else:
            rows = self._db.execute(
                "SELECT run_at, id, priority, class_name FROM jobs WHERE state = 'scheduled' "
                "AND oneshot = 0 AND (run_at, id) > (?, ?) ORDER BY run_at, id LIMIT ?",
                (*after, limit),
            )
        return [WaitingEntry(*row) for row in rows]

    def queued(self) -> list[WaitingEntry]:
        rows = self._db.execute(
            "SELECT run_at, id, priority, class_name FROM jobs WHERE state = 'queued' "
            "AND oneshot = 0 ORDER BY priority, run_at, id"
        )
        return [WaitingEntry(*row) for row in rows]

    def unfinished_oneshots(self) -> list[JobInfo]:
        rows = self._db.execute(
            f"SELECT {_COLUMNS} FROM jobs WHERE oneshot = 1 AND state IN "
            "('waiting', 'scheduled', 'queued', 'running') ORDER BY id"
        )
        return [_row_to_job(row) for row in rows]

    def running(self, owner: str | None = None) -> list[JobInfo]:
        sql = f"SELECT {_COLUMNS} FROM jobs WHERE state = 'running'"
        rows = (
            self._db.execute(sql + " AND owner = ? ORDER BY id", (owner,))
            if owner is not None
            else self._db.execute(sql + " ORDER BY id")
        )
        return [_row_to_job(row) for row in rows]

    def finished_per_minute(self, since: float) -> list[tuple[int, JobState, int]]:
        rows = self._db.execute(
            "SELECT CAST(finished_at / 60 AS INTEGER) AS minute, state, count(*) FROM jobs "
            "WHERE finished_at >= ? AND state IN ('succeeded', 'failed', 'cancelled') "
            "GROUP BY minute, state ORDER BY minute",
            (since,),
        )
        return [(minute, JobState(state), count) for minute, state, count in rows]

    # transitions ---------------------------------------------------------------------------

    def promote(self, job_ids: Sequence[int]) -> list[int]:
        promoted: list[int] = []
        for chunk in _chunks(job_ids, 500):
            rows = self._write(
                f"UPDATE jobs SET state = 'queued' WHERE state = 'scheduled' "
                f"AND id IN ({_placeholders(len(chunk))}) RETURNING id",
                chunk,
            ).fetchall()
            promoted.extend(row[0] for row in rows)
        return promoted

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
        # One statement: the attempt's own row is written when it ends (or by recovery).
        under_limit = ""
        args: tuple[Any, ...] = (now, worker_pid, owner, job_id, now)
        if limit is not None:
            under_limit = (
                " AND (SELECT count(*) FROM jobs AS other WHERE other.state = 'running' "
                "AND other.class_name = jobs.class_name AND other.limit_key = jobs.limit_key) < ?"
            )
            args = (*args, limit)
        if rate is not None:
            under_limit += (
                " AND (SELECT count(*) FROM starts WHERE starts.class_name = jobs.class_name "
                "AND starts.limit_key = jobs.limit_key AND starts.started_at > ?) < ?"
            )
            args = (*args, ratewindow.window_start(rate, now), rate.starts)
        row = self._write(
            "UPDATE jobs SET state = 'running', attempts = attempts + 1, started_at = ?, "
            "worker_pid = ?, owner = ?, cancel_reason = NULL WHERE id = ? "
            f"AND (state = 'queued' OR (state = 'scheduled' AND run_at <= ?)){under_limit} "
            f"RETURNING {_COLUMNS}",
            args,
        ).fetchone()
        if row is not None and rate is not None:
            self._count_start(job_id, rate, now)
        return None if row is None else _row_to_job(row, [_running_attempt(row)])

    def _count_start(self, job_id: int, rate: Rate, now: float) -> None:
        """A claimed job of a rate-limited class: its start counts against the rate (and
        the starts of its group no claim counts any more go)."""
        group = "(SELECT class_name, limit_key FROM jobs WHERE id = ?)"
        self._write(
            f"DELETE FROM starts WHERE (class_name, limit_key) = {group} AND started_at <= ?",
            (job_id, ratewindow.prune_before(rate, now)),
        )
        self._write(
            "INSERT INTO starts (class_name, limit_key, started_at) "
            "SELECT class_name, limit_key, ? FROM jobs WHERE id = ?",
            (now, job_id),
        )

    def claim_oneshot(
        self, job_id: int, owner: str, worker_pid: int | None, now: float
    ) -> JobInfo | None:
        row = self._write(
            "UPDATE jobs SET state = 'running', attempts = attempts + 1, started_at = ?, "
            "worker_pid = ?, owner = ?, cancel_reason = NULL WHERE id = ? AND oneshot = 1 "
            f"AND (state = 'queued' OR (state = 'scheduled' AND run_at <= ?)) RETURNING {_COLUMNS}",
            (now, worker_pid, owner, job_id, now),
        ).fetchone()
        return None if row is None else _row_to_job(row, [_running_attempt(row)])

    def adopt(
        self, job_ids: Sequence[int], owner: str
    ) -> list[tuple[WaitingEntry, JobState]] | None:
        marks = _placeholders(len(job_ids))
        # The check and the change in one write transaction: a runner's claim cannot
        # come between them.
        (running,) = self._write(
            f"SELECT count(*) FROM jobs WHERE id IN ({marks}) AND state = 'running'", job_ids
        ).fetchone()
        if running:
            return None
        rows = self._write(
            "UPDATE jobs SET oneshot = 0, owner = CASE WHEN state IN "
            "('queued', 'scheduled', 'waiting') THEN ? ELSE owner END "
            f"WHERE id IN ({marks}) AND oneshot = 1 "
            "RETURNING run_at, id, priority, class_name, state",
            (owner, *job_ids),
        ).fetchall()
        return [
            (WaitingEntry(run_at, job_id, priority, class_name), JobState(state))
            for run_at, job_id, priority, class_name, state in rows
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
        # Fencing in the statement that records the end (no SELECT of its own): it
        # matches no row once the attempt is no longer the owner's, and then nothing is
        # written.
        fence, fenced = self._fence(attempt)
        stale = StaleAttempt(f"job {job_id}: attempt {attempt.number} of {attempt.owner}")
        error = None if attempt.error is None else _encode(attempt.error)
        final = state in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)
        if final and count_attempt:
            # The row itself describes the final attempt (jobs.outcome): no attempts row.
            row = self._write(
                "UPDATE jobs SET state = ?, result = ?, error = coalesce(?, error), reason = ?, "
                "finished_at = ?, started_at = coalesce(started_at, ?), outcome = ?, "
                f"max_attempts = coalesce(?, max_attempts) WHERE id = ?{fence} "
                f"RETURNING {_COLUMNS}",
                (
                    state.value,
                    None if result is None else _encode(result),
                    error,
                    reason,
                    attempt.finished_at,
                    attempt.finished_at - attempt.duration,
                    attempt.outcome.value,
                    max_attempts,
                    job_id,
                    *fenced,
                ),
            ).fetchone()
            if row is None:
                raise stale
            return _row_to_job(row)
        inserted = self._write(
            "INSERT INTO attempts (job_id, number, round, started_at, finished_at, outcome, "
            "worker_pid, error, duration, node) SELECT id, ?, round, coalesce(started_at, ?), "
            f"?, ?, worker_pid, ?, ?, owner FROM jobs WHERE id = ?{fence}",
            (
                attempt.number,
                attempt.finished_at - attempt.duration,
                attempt.finished_at,
                attempt.outcome.value,
                error,
                attempt.duration,
                job_id,
                *fenced,
            ),
        )
        if inserted.rowcount == 0 and attempt.owner is not None:
            raise stale  # nothing written: the row's update below needs no fence
        row = self._write(
            "UPDATE jobs SET state = ?, result = ?, error = coalesce(?, error), reason = ?, "
            "finished_at = ?, run_at = coalesce(?, run_at), "
            "max_attempts = coalesce(?, max_attempts), worker_pid = NULL, "
            f"attempts = attempts - ? WHERE id = ? RETURNING {_COLUMNS}",
            (
                state.value,
                None if result is None else _encode(result),
                error,
                reason,
                attempt.finished_at if final else None,
                run_at,
                max_attempts,
                0 if count_attempt else 1,
                job_id,
            ),
        ).fetchone()
        return _row_to_job(row)

    @staticmethod
    def _fence(attempt: FinishedAttempt) -> tuple[str, tuple[Any, ...]]:
        """The WHERE terms (and their arguments) that hold while `attempt.owner` still
        runs this attempt of the job; none when the attempt names no owner."""
        if attempt.owner is None:
            return "", ()
        terms = " AND state = 'running' AND owner = ? AND attempts = ?"
        if attempt.round is None:
            return terms, (attempt.owner, attempt.number)
        return f"{terms} AND round = ?", (attempt.owner, attempt.number, attempt.round)

    def _keep_final_attempts(self, job_ids: Sequence[int], states: str) -> None:
        """Before a finished job runs again, its final attempt moves from its row (where
        jobs.outcome describes it) to the attempts table, like every earlier one."""
        self._write(
            "INSERT INTO attempts (job_id, number, round, started_at, finished_at, outcome, "
            "worker_pid, error, duration, node) SELECT id, attempts, round, "
            "coalesce(started_at, finished_at), finished_at, outcome, worker_pid, "
            "CASE WHEN outcome IN ('succeeded', 'cancelled') THEN NULL ELSE error END, "
            "finished_at - coalesce(started_at, finished_at), owner FROM jobs "
            f"WHERE id IN ({_placeholders(len(job_ids))}) AND outcome IS NOT NULL "
            f"AND state IN ({states}) ORDER BY id",
            job_ids,
        )

    def cancel_waiting(self, job_id: int, reason: str, now: float) -> JobInfo | None:
        row = self._write(
            "UPDATE jobs SET state = 'cancelled', reason = ?, finished_at = ? WHERE id = ? "
            f"AND state IN ('waiting', 'scheduled', 'queued') RETURNING {_COLUMNS}",
            (reason, now, job_id),
        ).fetchone()
        return None if row is None else _row_to_job(row)

    def mark_cancelled(self, job_ids: Sequence[int], reason: str, now: float) -> list[int]:
        cancelled: list[int] = []
        for chunk in _chunks(job_ids, 500):
            rows = self._write(
                "UPDATE jobs SET state = 'cancelled', reason = ?, finished_at = ? "
                f"WHERE id IN ({_placeholders(len(chunk))}) "
                "AND state IN ('waiting', 'scheduled', 'queued') RETURNING id",
                (reason, now, *chunk),
            ).fetchall()
            cancelled.extend(row[0] for row in rows)
        return cancelled

    def requeue(self, job_id: int, now: float) -> JobInfo | None:
        self._begin()
        row = self._db.execute(
            "SELECT unique_key FROM jobs WHERE id = ? AND state IN ('failed', 'cancelled')",
            (job_id,),
        ).fetchone()
        if row is None:
            return None
        live = None if row[0] is None else self.find_live_unique(str(row[0]))
        if live is not None:
            raise UniqueTaken(live)  # before any write: the job stays as it was
        self._keep_final_attempts([job_id], "'failed', 'cancelled'")
        row = self._write(
            "UPDATE jobs SET state = 'queued', run_at = ?, finished_at = NULL, reason = NULL, "
            "result = NULL, attempts = 0, round = round + 1, outcome = NULL, worker_pid = NULL "
            f"WHERE id = ? AND state IN ('failed', 'cancelled') RETURNING {_COLUMNS}",
            (now, job_id),
        ).fetchone()
        return None if row is None else _row_to_job(row)

    def set_waiting(self, job_ids: Sequence[int]) -> None:
        for chunk in _chunks(job_ids, 500):
            self._keep_final_attempts(chunk, "'cancelled'")
            self._write(
                "UPDATE jobs SET state = 'waiting', finished_at = NULL, reason = NULL, "
                "outcome = NULL, worker_pid = NULL "
                f"WHERE id IN ({_placeholders(len(chunk))}) AND state = 'cancelled'",
                chunk,
            )

    def release_link(self, job_id: int, params: list[Any], now: float) -> JobInfo | None:
        row = self._write(
            "UPDATE jobs SET state = 'queued', params = ?, run_at = ? "
            f"WHERE id = ? AND state = 'waiting' RETURNING {_COLUMNS}",
            (_encode(params), now, job_id),
        ).fetchone()
        return None if row is None else _row_to_job(row)

    # the shared queue ------------------------------------------------------------------------

    def _begin(self) -> None:
        """Open the write transaction now (reads after this see what no other process can
        change until the commit)."""
        if not self._db.in_transaction:
            self._begin_immediate()
            if self.on_begin is not None:
                self.on_begin()

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
        self._begin()
        held = (
            held_back(self._db.execute("SELECT kind, name FROM pauses"))
            if self.any_paused()
            else NOTHING_HELD
        )
        if held.everything or queue in held.queues:
            return None
        full = self._held_back(limits, rates or {}, now)
        skip = f" AND (class_name, limit_key) NOT IN (VALUES {_pairs(len(full))})" if full else ""
        args: list[Any] = [part for pair in full for part in pair]
        if held.classes:
            skip += f" AND class_name NOT IN ({_placeholders(len(held.classes))})"
            args += held.classes
        row = self._db.execute(
            "SELECT id, class_name FROM jobs INDEXED BY jobs_ready_in_queue WHERE queue = ? "
            f"AND state = 'queued' AND oneshot = 0{skip} ORDER BY priority, run_at, id LIMIT 1",
            (queue, *args),
        ).fetchone()
        if row is None:
            return None
        # By id: a commit that fails is redone statement by statement, and must take the
        # job the daemon started, whatever another process did meanwhile.
        job = self.claim(int(row[0]), owner, worker_pid, now)
        rate = (rates or {}).get(str(row[1]))
        if job is not None and rate is not None:
            self._count_start(job.id, rate, now)
        return job

    def _held_back(
        self, limits: Mapping[str, int], rates: Mapping[str, Rate], now: float
    ) -> list[tuple[str, str]]:
        """The (class, limit key) groups at their concurrency limit or their rate now."""
        full: list[tuple[str, str]] = []
        if limits:
            names = list(limits)
            counts = self._db.execute(
                "SELECT class_name, limit_key, count(*) FROM jobs WHERE state = 'running' "
                f"AND class_name IN ({_placeholders(len(names))}) GROUP BY class_name, limit_key",
                names,
            )
            full += [(name, key) for name, key, running in counts if running >= limits[name]]
        for name, rate in rates.items():
            started = self._db.execute(
                "SELECT limit_key, count(*) FROM starts WHERE class_name = ? AND started_at > ? "
                "GROUP BY limit_key",
                (name, ratewindow.window_start(rate, now)),
            )
            full += [(name, key) for key, count in started if count >= rate.starts]
        return full

    def next_rate_slot(
        self, rates: Mapping[str, Rate], now: float, job_id: int | None = None
    ) -> float | None:
        if not rates:
            return None
        names = list(rates)
        marks = _placeholders(len(names))
        if job_id is None:
            groups = self._db.execute(
                "SELECT DISTINCT class_name, limit_key FROM jobs INDEXED BY jobs_ready_in_queue "
                f"WHERE state = 'queued' AND oneshot = 0 AND class_name IN ({marks})",
                names,
            ).fetchall()
        else:
            groups = self._db.execute(
                "SELECT class_name, limit_key FROM jobs WHERE id = ? "
                f"AND state IN ('queued', 'scheduled') AND class_name IN ({marks})",
                (job_id, *names),
            ).fetchall()
        slots = []
        for name, key in groups:
            rate = rates[name]
            started = self._db.execute(
                "SELECT started_at FROM starts WHERE class_name = ? AND limit_key = ? "
                "AND started_at > ? ORDER BY started_at",
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
                for key, started, oldest in self._db.execute(
                    "SELECT limit_key, count(*), min(started_at) FROM starts "
                    "WHERE class_name = ? AND started_at > ? GROUP BY limit_key",
                    (name, since),
                )
            ]
            held = 0
            if any(started >= rate.starts for _, started, _ in groups):
                row = self._db.execute(
                    "SELECT count(*) FROM (SELECT 1 FROM jobs WHERE state = 'queued' "
                    "AND oneshot = 0 AND class_name = ? AND limit_key IN (SELECT limit_key "
                    "FROM starts WHERE class_name = ? AND started_at > ? GROUP BY limit_key "
                    "HAVING count(*) >= ?) LIMIT ?)",
                    (name, name, since, rate.starts, HELD_COUNT_CAP),
                ).fetchone()
                held = int(row[0])
            uses.append(
                ratewindow.use_of(
                    name, rate, groups, held, functools.partial(self._starts_since, name, since)
                )
            )
        return uses

    def _starts_since(self, class_name: str, since: float, key: str) -> list[float]:
        rows = self._db.execute(
            "SELECT started_at FROM starts WHERE class_name = ? AND limit_key = ? "
            "AND started_at > ? ORDER BY started_at",
            (class_name, key, since),
        )
        return [float(at) for (at,) in rows]

    def forget_starts(self, rates: Mapping[str, Rate], now: float, limit: int) -> int:
        cutoffs, otherwise = ratewindow.forget_cutoffs(rates, now)
        cutoff = "?"
        if cutoffs:
            cutoff = f"CASE class_name {' '.join('WHEN ? THEN ?' for _ in cutoffs)} ELSE ? END"
        args = [value for pair in cutoffs for value in pair]
        deleted = self._write(
            "DELETE FROM starts WHERE rowid IN (SELECT rowid FROM starts "
            f"WHERE started_at <= {cutoff} LIMIT ?)",
            (*args, otherwise, limit),
        )
        return max(deleted.rowcount, 0)

    def promote_due(self, now: float) -> list[int]:
        # A NULL due time is a NaN that SQLite stored: due at once rather than never.
        rows = self._write(
            "UPDATE jobs SET state = 'queued' WHERE state = 'scheduled' AND oneshot = 0 "
            "AND (run_at <= ? OR run_at IS NULL) RETURNING id",
            (now,),
        ).fetchall()
        return [int(job_id) for (job_id,) in rows]

    def next_due(self) -> float | None:
        row = self._db.execute(
            "SELECT run_at FROM jobs WHERE state = 'scheduled' AND oneshot = 0 "
            "ORDER BY run_at LIMIT 1"
        ).fetchone()
        if row is None:
            return None
        return 0.0 if row[0] is None else float(row[0])

    def queued_in_order(self, limit: int, queue: str | None = None) -> list[WaitingEntry]:
        names = [queue] if queue is not None else self._queues_with_jobs()
        entries: list[WaitingEntry] = []
        for name in names:
            rows = self._db.execute(
                "SELECT run_at, id, priority, class_name FROM jobs INDEXED BY jobs_ready_in_queue "
                "WHERE queue = ? AND state = 'queued' AND oneshot = 0 "
                "ORDER BY priority, run_at, id LIMIT ?",
                (name, limit),
            )
            entries.extend(WaitingEntry(*row) for row in rows)
        return in_claim_order(entries, limit) if len(names) > 1 else entries

    def _queues_with_jobs(self) -> list[str]:
        """The queues that have queued jobs: one index seek each, not a scan."""
        names: list[str] = []
        while True:
            row = self._db.execute(
                "SELECT min(queue) FROM jobs INDEXED BY jobs_ready_in_queue "
                "WHERE state = 'queued' AND oneshot = 0 AND queue > ?",
                (names[-1] if names else "",),
            ).fetchone()
            if row is None or row[0] is None:
                return names
            names.append(str(row[0]))

    def queued_per_queue(self) -> dict[str, int]:
        rows = self._db.execute(
            "SELECT queue, count(*) FROM jobs INDEXED BY jobs_ready_in_queue "
            "WHERE state = 'queued' AND oneshot = 0 GROUP BY queue"
        )
        return {str(name): int(count) for name, count in rows}

    def attempt_is_current(
        self, job_id: int, owner: str, number: int, round_number: int | None = None
    ) -> bool:
        self._begin()
        row = self._db.execute(
            "SELECT round FROM jobs WHERE id = ? AND state = 'running' AND owner = ? "
            "AND attempts = ?",
            (job_id, owner, number),
        ).fetchone()
        return row is not None and round_number in (None, row[0])

    def request_cancel(self, job_id: int, reason: str) -> str | None:
        row = self._write(
            "UPDATE jobs SET cancel_reason = ? WHERE id = ? AND state = 'running' RETURNING owner",
            (reason, job_id),
        ).fetchone()
        return None if row is None else str(row[0])

    def cancel_requests(self, owner: str) -> list[tuple[int, str]]:
        rows = self._db.execute(
            "SELECT id, cancel_reason FROM jobs INDEXED BY jobs_cancelling "
            "WHERE owner = ? AND cancel_reason IS NOT NULL AND state = 'running' ORDER BY id",
            (owner,),
        )
        return [(int(job_id), str(reason)) for job_id, reason in rows]

    def changed(self) -> bool:
        version = int(self._db.execute("PRAGMA data_version").fetchone()[0])
        changed = version != getattr(self, "_data_version", None)
        self._data_version = version
        return changed

    # pauses ---------------------------------------------------------------------------------

    def pause(self, kind: PauseKind, name: str, now: float) -> bool:
        self._pauses_seen_at = None
        row = self._write(
            "INSERT INTO pauses (kind, name, since) VALUES (?, ?, ?) "
            "ON CONFLICT (kind, name) DO NOTHING RETURNING kind",
            (kind.value, name, now),
        ).fetchone()
        return row is not None

    def resume(self, kind: PauseKind, name: str) -> bool:
        self._pauses_seen_at = None
        row = self._write(
            "DELETE FROM pauses WHERE kind = ? AND name = ? RETURNING kind", (kind.value, name)
        ).fetchone()
        return row is not None

    def pauses(self) -> list[PauseInfo]:
        return pause_infos(
            self._db.execute("SELECT kind, name, since FROM pauses ORDER BY kind, name")
        )

    def any_paused(self) -> bool:
        # Read again only when another connection committed since (its data_version
        # moved) or this one paused or resumed: a submit costs a pragma, not a query.
        version = int(self._db.execute("PRAGMA data_version").fetchone()[0])
        if version != self._pauses_seen_at:
            self._paused = self._db.execute("SELECT EXISTS (SELECT 1 FROM pauses)").fetchone()[0]
            self._pauses_seen_at = version
        return bool(self._paused)

    # bulk actions ----------------------------------------------------------------------------

    def matching_ids(self, query: JobQuery, after: int, limit: int) -> list[int]:
        where, args = self._filters(query)
        where = f"{where} AND id > ?" if where else "WHERE id > ?"
        rows = self._db.execute(
            f"SELECT id FROM jobs {where} ORDER BY id LIMIT ?", (*args, after, limit)
        )
        return [int(job_id) for (job_id,) in rows]

    # nodes ---------------------------------------------------------------------------------

    def register_node(self, node: NodeInfo) -> NodeInfo | None:
        self._begin()
        for existing in self._nodes("WHERE name = ?", (node.name,)):
            alive = existing.lease_until.timestamp() > node.heartbeat_at.timestamp()
            if alive and (existing.host, existing.pid) != (node.host, node.pid):
                return existing
        self._write(
            "INSERT OR REPLACE INTO nodes (name, host, pid, address, started_at, heartbeat_at, "
            "lease_until, workers_busy, workers_total) VALUES (?,?,?,?,?,?,?,?,?)",
            (
                node.name,
                node.host,
                node.pid,
                node.address,
                node.started_at.timestamp(),
                node.heartbeat_at.timestamp(),
                node.lease_until.timestamp(),
                node.workers_busy,
                node.workers_total,
            ),
        )
        return None

    def heartbeat(self, node: NodeInfo) -> bool:
        cursor = self._write(
            "UPDATE nodes SET heartbeat_at = ?, lease_until = ?, workers_busy = ?, "
            "workers_total = ? WHERE name = ? AND host = ? AND pid = ? AND started_at = ?",
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
        rows = self._write(
            "DELETE FROM nodes WHERE lease_until < ? RETURNING name", (now,)
        ).fetchall()
        return sorted(str(name) for (name,) in rows)

    def orphan_owners(self) -> list[str]:
        self._begin()  # read in the write transaction: no other node reclaims meanwhile
        rows = self._db.execute(
            "SELECT DISTINCT owner FROM jobs WHERE state = 'running' AND oneshot = 0 "
            "AND owner IS NOT NULL AND owner NOT IN (SELECT name FROM nodes) ORDER BY owner"
        )
        return [str(owner) for (owner,) in rows]

    def leave(self, node: NodeInfo) -> None:
        self._write(
            "DELETE FROM nodes WHERE name = ? AND host = ? AND pid = ? AND started_at = ?",
            (node.name, node.host, node.pid, node.started_at.timestamp()),
        )

    def nodes(self) -> list[NodeInfo]:
        return self._nodes("", ())

    def _nodes(self, where: str, args: Sequence[Any]) -> list[NodeInfo]:
        rows = self._db.execute(
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
        # A range on the key (the prefix up to the next character) reads the key's index
        # backwards from its end: one B-tree descent, whatever the number of jobs.
        end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        row = self._db.execute(
            "SELECT idempotency_key FROM jobs WHERE idempotency_key >= ? "
            "AND idempotency_key < ? ORDER BY idempotency_key DESC LIMIT 1",
            (prefix, end),
        ).fetchone()
        return None if row is None else str(row[0])

    def prune(self, rules: PruneRules, limit: int, *, dry_run: bool = False) -> list[PrunedJob]:
        condition, args = self._prunable(rules)
        if not condition:
            return []
        # Oldest first along the finished index. A chain goes whole or not at all: a link
        # only when every link of its chain may go (none waiting or running, all old
        # enough), and then with all of them, so a retry never meets half a chain. A batch
        # (its callback and members) the same way.
        rows = self._db.execute(
            # Along the finished index, which stops at the limit (the state index would read
            # every finished job and sort them, at each batch).
            "SELECT id, state, chain_id, batch_id FROM jobs INDEXED BY jobs_finished "
            "WHERE finished_at IS NOT NULL "
            f"AND {condition.format(t='jobs')} "
            "AND (chain_id IS NULL OR NOT EXISTS (SELECT 1 FROM jobs AS link "
            f"WHERE link.chain_id = jobs.chain_id AND NOT ifnull({condition.format(t='link')}, 0)))"
            # A batch likewise: its callback reads its members' results from their rows.
            " AND (batch_id IS NULL OR NOT EXISTS (SELECT 1 FROM jobs AS member "
            "WHERE member.batch_id = jobs.batch_id "
            f"AND NOT ifnull({condition.format(t='member')}, 0)))"
            " ORDER BY finished_at LIMIT ?",
            (*args, *args, *args, limit),
        ).fetchall()
        found = {int(job_id): JobState(state) for job_id, state, _, _ in rows}
        for column, groups in (
            ("chain_id", sorted({int(chain) for _, _, chain, _ in rows if chain is not None})),
            ("batch_id", sorted({int(batch) for _, _, _, batch in rows if batch is not None})),
        ):
            for chunk in _chunks(groups, 500):
                together = self._db.execute(
                    f"SELECT id, state FROM jobs WHERE {column} IN ({_placeholders(len(chunk))})",
                    list(chunk),
                )
                found.update((int(job_id), JobState(state)) for job_id, state in together)
        pruned = [PrunedJob(job_id, state) for job_id, state in found.items()]
        if pruned and not dry_run:
            for ids in _chunks(list(found), 500):
                # Attempts go with their job (ON DELETE CASCADE); state counts by trigger.
                self._write(f"DELETE FROM jobs WHERE id IN ({_placeholders(len(ids))})", ids)
        return pruned

    def _prunable(self, rules: PruneRules) -> tuple[str, list[Any]]:
        """The condition (on table alias `{t}`) that a job may go, and its arguments."""
        ages = list(rules.finished_before.items())
        terms = [f"({{t}}.state = '{state.value}' AND {{t}}.finished_at < ?)" for state, _ in ages]
        args: list[Any] = [before for _, before in ages]
        count_cutoff = self._count_cutoff(rules.max_finished)
        if count_cutoff is not None:
            terms.append("{t}.finished_at <= ?")
            args.append(count_cutoff)
        if not terms:
            return "", []
        keep = sorted(rules.keep_keys)
        condition = (
            f"({{t}}.state IN ({_FINAL}) AND ({' OR '.join(terms)}) AND "
            f"({{t}}.idempotency_key IS NULL OR {{t}}.idempotency_key NOT IN "
            f"({_placeholders(len(keep))})))"
        )
        return condition, [*args, *keep]

    def _count_cutoff(self, max_finished: int | None) -> float | None:
        """The finish time at or before which jobs are beyond the newest `max_finished`."""
        if max_finished is None:
            return None
        row = self._db.execute(
            "SELECT finished_at FROM jobs INDEXED BY jobs_finished "
            f"WHERE finished_at IS NOT NULL AND state IN ({_FINAL}) "
            "ORDER BY finished_at DESC LIMIT 1 OFFSET ?",
            (max_finished,),
        ).fetchone()
        return None if row is None else float(row[0])

    def attempt_rows(self, job_ids: Sequence[int]) -> int:
        """How many earlier-attempt rows these jobs have (what pruning them removes)."""
        total = 0
        for chunk in _chunks(job_ids, 500):
            row = self._db.execute(
                f"SELECT count(*) FROM attempts WHERE job_id IN ({_placeholders(len(chunk))})",
                list(chunk),
            ).fetchone()
            total += int(row[0])
        return total

    def truncate_log(self) -> bool:
        """Checkpoint the whole WAL and truncate it to nothing, from a connection of its own
        (run it off the event loop). Under a steady stream of commits the background
        PASSIVE checkpoints never find the WAL fully copied with no commit after, so SQLite
        never restarts it from its beginning and the file grows for as long as the load
        lasts; this makes it start over. Writers wait while it runs (the copy of what the
        passive checkpoints left). False if it could not get its turn within a second."""
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            db.execute(f"PRAGMA busy_timeout = {_TRUNCATE_WAIT_MS}")
            busy, _, _ = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            return not busy
        finally:
            db.close()

    def log_size(self) -> int:
        """Bytes of the WAL file (0 when there is none)."""
        try:
            return self.path.with_name(self.path.name + "-wal").stat().st_size
        except FileNotFoundError:
            return 0

    # outputs -------------------------------------------------------------------------------

    def keep_output(self, job_id: int, attempt: int, output: AttemptOutput) -> None:
        # Written with the attempt's outcome, in the same group commit.
        self._write(
            "INSERT OR REPLACE INTO outputs (job_id, round, attempt, printed, origin, tail) "
            "SELECT id, round, ?, ?, ?, ? FROM jobs WHERE id = ?",
            (attempt, output.printed, output.origin, output.tail, job_id),
        )

    def output_origins(self, job_id: int) -> set[str]:
        rows = self._db.execute("SELECT DISTINCT origin FROM outputs WHERE job_id = ?", (job_id,))
        return {str(origin) for (origin,) in rows}

    def stored_outputs(self, job_id: int) -> list[StoredOutput]:
        rows = self._db.execute(
            "SELECT round, attempt, printed, origin, tail FROM outputs WHERE job_id = ? "
            "ORDER BY round, attempt",
            (job_id,),
        )
        return [
            StoredOutput(round_, attempt, AttemptOutput(bytes(tail), printed, origin))
            for round_, attempt, printed, origin, tail in rows
        ]


def _chunks(items: Sequence[int], size: int) -> Iterable[Sequence[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
