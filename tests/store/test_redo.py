"""A failed commit loses no internal write: after SQLite drops the transaction, the store
redoes every write of it except the submits', with the same results."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from bgjobd.store.base import FinishedAttempt, NewJob
from bgjobd.store.sqlite import SQLiteStore
from bgjobs.model import JobState, Outcome, Priority

pytestmark = pytest.mark.sqlite_only(
    "SQLite drops the whole transaction at a full disk's COMMIT; PostgreSQL reports a failed "
    "COMMIT and keeps nothing of it (PostgresStore.redo_kept_writes redoes nothing)"
)


def _job(name: str) -> NewJob:
    now = time.time()
    return NewJob(
        class_name=name,
        method="handle",
        params=[name],
        priority=Priority.MEDIUM,
        state=JobState.QUEUED,
        run_at=now,
        max_attempts=3,
        timeout=30.0,
        created_at=now,
    )


def test_redo_keeps_claims_and_outcomes_and_drops_submits(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "bgjobs.db")
    try:
        first, second = store.add([_job("A")])[0], store.add([_job("B")])[0]
        store.commit()
        now = time.time()
        assert store.claim(first, "me", 1, now) is not None
        assert store.claim(second, "me", 2, now) is not None
        store.finish_attempt(
            first, FinishedAttempt(1, Outcome.SUCCEEDED, now, 0.1), JobState.SUCCEEDED, result=7
        )
        dropped = store.add([_job("C")])[0]
        # What SQLite does to a COMMIT that meets a full disk in WAL mode: all is gone.
        store._db.execute("ROLLBACK")  # standing in for SQLITE_FULL

        assert store.redo_kept_writes() == 3
        store.commit()
    finally:
        store.close()
    reopened = SQLiteStore(tmp_path / "bgjobs.db")
    try:
        done = reopened.get(first)
        assert done is not None and done.state is JobState.SUCCEEDED and done.result == 7
        running = reopened.get(second)
        assert running is not None and running.state is JobState.RUNNING
        assert running.attempts == 1
        assert reopened.get(dropped) is None, "a submit is not redone: its client was refused"
    finally:
        reopened.close()
