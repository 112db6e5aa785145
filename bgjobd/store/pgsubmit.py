"""A submit's rows on PostgreSQL, as statements any connection can run: the store's own
(`PostgresStore.add`) and an application's, inside the application's own transaction
(`bgjobctl.transactional`). The INSERT and what a violated unique index means live here
only.

Each step is a generator of statements: it yields `(query, args)` and is sent back the
rows the statement returned (none for one that returns none), or has the statement's
exception thrown into it. So one text serves psycopg's blocking and asyncio connections
alike (`run`, `run_async`); the tables are named without a schema: the connection's
search_path names the store's.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator, Sequence
from typing import Any, Final, TypeVar

from psycopg import errors

from bgjobd.store.base import KeyTaken, NewJob, UniqueTaken
from bgjobd.store.rows import encode
from bgjobs.model import JobState

T = TypeVar("T")
Rows = list[tuple[Any, ...]]
Statement = tuple[str, Sequence[Any]]
Steps = Generator[Statement, Rows, T]
Execute = Callable[[str, Sequence[Any]], Rows]
AsyncExecute = Callable[[str, Sequence[Any]], Awaitable[Rows]]

LIVE: Final = "('queued', 'running', 'scheduled', 'waiting')"
"""As in the unique index's condition, literally, so that the planner uses the index."""
_SAVEPOINT: Final = "bgjobs_add"
"""Named apart from an application's own savepoints (a same-named one would be shadowed,
not broken, but a distinct name reads better in the server's log)."""
_INSERT_INTO: Final = (
    "INSERT INTO jobs (class_name, method, params, priority, state, run_at, "
    "max_attempts, timeout, created_at, owner, chain_id, chain_position, "
    "chain_length, unique_key, oneshot, attempts, started_at, worker_pid, "
    "idempotency_key, trace, batch_id, batch_on_failure, limit_key, queue) VALUES "
)
_ROW: Final = "(%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)"
_INSERT: Final = f"{_INSERT_INTO}{_ROW} RETURNING id"
_COLUMNS: Final = 24
_STATE, _ATTEMPTS, _STARTED_AT, _WORKER_PID = 4, 15, 16, 17
"""Positions in `_values` of what a fast-path row (RUNNING) changes from a queued one."""
_UNLESS_PAUSED: Final = {
    _STATE: "CASE WHEN paused.p THEN 'queued' ELSE %s END",
    _ATTEMPTS: "CASE WHEN paused.p THEN 0 ELSE %s END",
    _STARTED_AT: "CASE WHEN paused.p THEN NULL ELSE %s::double precision END",
    _WORKER_PID: "CASE WHEN paused.p THEN NULL ELSE %s::integer END",
}
_ONE: Final = f"{_INSERT_INTO}{_ROW} ON CONFLICT DO NOTHING RETURNING id, state"
_ONE_UNLESS_PAUSED: Final = (
    _INSERT_INTO.removesuffix(" VALUES ")
    + " SELECT "
    + ",".join(_UNLESS_PAUSED.get(column, "%s") for column in range(_COLUMNS))
    + " FROM (SELECT EXISTS (SELECT 1 FROM pauses) AS p) AS paused"
    + " ON CONFLICT DO NOTHING RETURNING id, state"
)
"""A fast-path row (RUNNING, its worker given) stored as queued instead when any pause is
stored, decided in the INSERT's own snapshot: a pause committed by any node before the
statement began holds for it, as a separate SELECT before it would, for one round trip."""
_ONE_TRIES: Final = 3
"""A conflicting row gone before it was read (pruned, or a unique job finished): insert
again; a third time is not expected of anything but a store being emptied under us."""
EACH_ROWS: Final = 1000
"""Rows per INSERT of `add_each`: 24,000 parameters, within PostgreSQL's 65,535."""


def may_collide(links: Sequence[NewJob]) -> bool:
    """Whether a unique index may refuse the rows (an idempotency key, a unique job)."""
    return any(link.key is not None or link.unique_key is not None for link in links)


def add(links: Sequence[NewJob]) -> Steps[list[int]]:
    """Insert the rows, all or none (see `Store.add`); KeyTaken or UniqueTaken when a unique
    index refuses them. Rows that may collide are inserted under a savepoint, so that a
    refusal undoes only them and the transaction (other submits, the application's own
    writes) goes on; those that cannot spare its round trips."""
    if not may_collide(links):
        return (yield from insert(links))
    try:
        return (yield from _undone_alone(insert(links)))
    except errors.UniqueViolation as exc:
        refused = yield from refusal(exc.diag.constraint_name, links)
        if refused is None:
            raise
        raise refused from None


def add_one(link: NewJob) -> Steps[tuple[int, JobState]]:
    """A single job (no chain, no batch) in one statement, for the store's own submits: its
    id and the state stored. A conflict on a unique index (its idempotency key, an equal
    live unique job) inserts nothing instead of failing, so no savepoint is needed (two
    round trips fewer than `add`): KeyTaken or UniqueTaken then, as `add` raises. A RUNNING
    row (the fast path) is stored as queued instead when any pause is stored (see
    `_ONE_UNLESS_PAUSED`).

    ON CONFLICT waits for a conflicting row of a transaction still open (as the unique
    index would) and inserts if that transaction rolls back, so an empty answer means a
    committed (or our own transaction's) row holds the key: read in a new snapshot below."""
    query = _ONE_UNLESS_PAUSED if link.state is JobState.RUNNING else _ONE
    values = _values(link, None, None)
    for _ in range(_ONE_TRIES):
        rows = yield (query, values)
        if rows:
            return int(rows[0][0]), JobState(rows[0][1])
        refused = yield from _taken(link)
        if refused is not None:
            raise refused
    raise RuntimeError(
        f"job {link.class_name}::{link.method} conflicted with a stored job "
        f"{_ONE_TRIES} times, which was gone each time it was looked for"
    )


def _taken(link: NewJob) -> Steps[Exception | None]:
    """Why a single job's row was not inserted: its key taken, or an equal live job."""
    if link.key is not None:
        found = yield from find_by_key(link.key)
        if found is not None:
            return KeyTaken(link.key, found)
    if link.unique_key is not None:
        live = yield from find_live_unique(link.unique_key)
        if live is not None:
            return UniqueTaken(live)
    return None


def add_each(links: Sequence[NewJob]) -> Steps[list[int] | None]:
    """Single jobs (see `Store.add_each`) in one INSERT per EACH_ROWS, under a savepoint:
    their ids in order, or None with nothing inserted when a unique index refuses one."""
    try:
        return (yield from _undone_alone(_insert_each(links)))
    except errors.UniqueViolation:
        return None


def _undone_alone(steps: Steps[T]) -> Steps[T]:
    """`steps` under a savepoint: when one of their statements fails, they alone are undone
    and the transaction goes on; the failure is raised again."""
    yield (f"SAVEPOINT {_SAVEPOINT}", ())
    try:
        done = yield from steps
    except GeneratorExit:
        raise  # abandoned by its driver: no statement may follow
    except BaseException:
        yield (f"ROLLBACK TO SAVEPOINT {_SAVEPOINT}", ())
        yield (f"RELEASE SAVEPOINT {_SAVEPOINT}", ())
        raise
    yield (f"RELEASE SAVEPOINT {_SAVEPOINT}", ())
    return done


def _insert_each(links: Sequence[NewJob]) -> Steps[list[int]]:
    ids: list[int] = []
    for start in range(0, len(links), EACH_ROWS):
        part = links[start : start + EACH_ROWS]
        values = [value for link in part for value in _values(link, None, None)]
        rows = yield (f"{_INSERT_INTO}{','.join([_ROW] * len(part))} RETURNING id", values)
        # Identity values are drawn row by row in the order of VALUES (RETURNING's own order
        # is not promised).
        ids += sorted(int(row[0]) for row in rows)
    return ids


def insert(links: Sequence[NewJob]) -> Steps[list[int]]:
    """The rows inserted: a job, a chain (sharing the first id as chain id), or a batch (its
    callback first: its id is the batch id of every row)."""
    ids: list[int] = []
    batch = bool(links) and links[0].batch_callback
    for link in links:
        first = ids[0] if ids else None
        rows = yield (_INSERT, _values(link, None if batch else first, first if batch else None))
        ids.append(int(rows[0][0]))
    if batch:
        # The callback's id names the batch; its members were stored with it.
        yield ("UPDATE jobs SET batch_id = %s WHERE id = %s", (ids[0], ids[0]))
    elif len(links) > 1:
        yield ("UPDATE jobs SET chain_id = %s WHERE id = %s", (ids[0], ids[0]))
    return ids


def _values(link: NewJob, chain_id: int | None, batch_id: int | None) -> tuple[Any, ...]:
    return (
        link.class_name,
        link.method,
        encode(link.params),
        link.priority.rank,
        link.state.value,
        link.run_at,
        link.max_attempts,
        link.timeout,
        link.created_at,
        link.owner,
        chain_id,
        link.chain_position,
        link.chain_length,
        link.unique_key,
        link.oneshot,
        1 if link.state is JobState.RUNNING else 0,
        link.started_at,
        link.worker_pid,
        link.key,
        None if link.trace is None else encode(link.trace),
        batch_id,
        link.run_callback_on_failure if link.batch_callback else None,
        link.limit_key,
        link.queue,
    )


def refusal(constraint: str | None, links: Sequence[NewJob]) -> Steps[Exception | None]:
    """What a violated unique index means for a submit: its key is taken, or an equal
    unique job is live (stored by another node or transaction, perhaps a moment ago)."""
    key = links[0].key
    if constraint == "jobs_by_key" and key is not None:
        found = yield from find_by_key(key)
        return None if found is None else KeyTaken(key, found)
    if constraint == "jobs_unique_live":
        for link in links:
            if link.unique_key is not None:
                live = yield from find_live_unique(link.unique_key)
                if live is not None:
                    return UniqueTaken(live)
    return None


def find_by_key(key: str) -> Steps[list[int] | None]:
    rows = yield ("SELECT id, chain_id FROM jobs WHERE idempotency_key = %s", (key,))
    if not rows:
        return None
    job_id, chain_id = rows[0]
    if chain_id is None:
        return [int(job_id)]
    links = yield ("SELECT id FROM jobs WHERE chain_id = %s ORDER BY chain_position", (chain_id,))
    return [int(link_id) for (link_id,) in links]


def find_live_unique(unique_key: str) -> Steps[int | None]:
    rows = yield (
        f"SELECT id FROM jobs WHERE unique_key = %s AND state IN {LIVE} ORDER BY id LIMIT 1",
        (unique_key,),
    )
    return int(rows[0][0]) if rows else None


def run(execute: Execute, steps: Steps[T], passthrough: tuple[type[BaseException], ...] = ()) -> T:
    """Drive the steps on a blocking connection: each statement run, its rows sent back, its
    exception thrown in; one of `passthrough` instead ends the steps and propagates (the
    transaction is gone: no statement may follow)."""
    try:
        statement = next(steps)
        while True:
            try:
                rows = execute(*statement)
            except passthrough:
                steps.close()
                raise
            except BaseException as exc:  # noqa: BLE001  # the steps decide; they re-raise
                statement = steps.throw(exc)
            else:
                statement = steps.send(rows)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


async def run_async(execute: AsyncExecute, steps: Steps[T]) -> T:
    """`run`, on an asyncio connection."""
    try:
        statement = next(steps)
        while True:
            try:
                rows = await execute(*statement)
            except BaseException as exc:  # noqa: BLE001  # the steps decide; they re-raise
                statement = steps.throw(exc)
            else:
                statement = steps.send(rows)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
