"""What the store's test modules share: the backends under test and small builders of jobs,
attempt ends and nodes."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import msgspec

from bgjobd.store.base import FinishedAttempt, NewJob, Store
from bgjobd.store.sqlite import SQLiteStore
from bgjobs.model import ErrorInfo, JobState, NodeInfo, Outcome, Priority

Backend = Callable[[Path], Store]
BACKENDS: dict[str, Backend] = {"sqlite": lambda tmp: SQLiteStore(tmp / "bgjobs.db")}


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
