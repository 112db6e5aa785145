"""A batch's callback is released exactly once, decided in the transaction that records its
last job's end: on a real store, through `outcomes.record` as the daemon and its recovery
record every attempt."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bgjobd import batches, outcomes
from bgjobd.attempts import AttemptResult
from bgjobd.joblog import JobLog
from bgjobd.store.base import NewJob
from bgjobd.store.sqlite import SQLiteStore
from bgjobs.config import Config, load_config
from bgjobs.model import ChainLink, JobInfo, JobSpec, JobState, Outcome
from tests.support.workspace import Workspace


@pytest.fixture
def config(workspace: Workspace) -> Config:
    workspace.write_config({"allowed_jobs": {"Square": ["handle"], "BatchCallback": ["handle"]}})
    return load_config(workspace.config_path)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    opened = SQLiteStore(tmp_path / "bgjobs.db")
    yield opened
    opened.close()


def stored_batch(
    config: Config, store: SQLiteStore, size: int, *, on_failure: bool = False
) -> list[int]:
    spec = JobSpec(
        class_name="BatchCallback",
        method="handle",
        params=["own"],
        batch=[ChainLink("Square", "handle", [n]) for n in range(size)],
        run_callback_on_failure=on_failure,
    )
    rows: list[NewJob] = batches.build(config, spec, time.time(), "test")
    ids = store.add(rows)
    store.commit()
    return ids


def run(store: SQLiteStore, job_id: int) -> JobInfo:
    claimed = store.claim(job_id, "test", 1, time.time())
    assert claimed is not None
    return claimed


def ended(outcome: Outcome, result: object = None) -> AttemptResult:
    now = time.time()
    return AttemptResult(outcome, now - 0.01, now, 1, result=result)


def test_two_jobs_ending_in_one_commit_release_the_callback_once(
    config: Config, store: SQLiteStore, tmp_path: Path
) -> None:
    log = JobLog(tmp_path / "logs")
    callback, first, second = stored_batch(config, store, 2)
    jobs = [run(store, first), run(store, second)]
    store.commit()
    one = outcomes.record(config, store, log, jobs[0], ended(Outcome.SUCCEEDED, 10))
    two = outcomes.record(config, store, log, jobs[1], ended(Outcome.SUCCEEDED, 20))
    store.commit()
    assert one.released_callback is None
    assert two.released_callback is not None and two.released_callback.id == callback
    released = store.get(callback)
    assert released is not None and released.state is JobState.QUEUED
    assert released.params == [[10, 20], "own"]
    # Asked again (a second report of the same end): the callback is not waiting any more.
    assert batches.ended(store, store.get(second), time.time()).released is None  # type: ignore[arg-type]


def test_a_crash_before_the_commit_loses_the_end_and_the_release_together(
    config: Config, store: SQLiteStore, tmp_path: Path
) -> None:
    log = JobLog(tmp_path / "logs")
    callback, only = stored_batch(config, store, 1)
    job = run(store, only)
    store.commit()
    outcomes.record(config, store, log, job, ended(Outcome.SUCCEEDED, 5))
    store.rollback()  # the daemon died before its commit
    assert store.get(callback).state is JobState.WAITING  # type: ignore[union-attr]
    assert store.get(only).state is JobState.RUNNING  # type: ignore[union-attr]
    again = outcomes.record(config, store, log, job, ended(Outcome.SUCCEEDED, 5))
    store.commit()
    assert again.released_callback is not None
    assert store.get(callback).params == [[5], "own"]  # type: ignore[union-attr]


def test_a_failed_job_cancels_the_callback_or_passes_none(
    config: Config, store: SQLiteStore, tmp_path: Path
) -> None:
    log = JobLog(tmp_path / "logs")
    for on_failure in (False, True):
        callback, good, bad = stored_batch(config, store, 2, on_failure=on_failure)
        outcomes.record(config, store, log, run(store, good), ended(Outcome.SUCCEEDED, 1))
        failure = ended(Outcome.CRASHED)
        recorded = outcomes.record(config, store, log, run(store, bad), failure)
        store.commit()
        after = store.get(callback)
        assert after is not None
        if on_failure:
            assert recorded.released_callback is not None
            assert after.state is JobState.QUEUED and after.params == [[1, None], "own"]
        else:
            assert recorded.cancelled_links == [callback]
            assert after.state is JobState.CANCELLED
            assert after.reason == f"batch member {bad} (Square::handle) ended failed"
