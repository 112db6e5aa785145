"""Claims in batches (`Store.claim_batch`), on both backends: several workers' jobs at once
are exactly the jobs, in the order, that claims one by one would give, each started for the
worker it names; a batch skips what another connection's open claim holds, and never
shares a job with it; PostgreSQL's one-statement batch is redone job by job after the
server dropped its transaction."""

from __future__ import annotations

import time

import psycopg
import pytest

from bgjobd.store.base import StaleAttempt, Store
from bgjobd.store.offline import StoreOffline
from bgjobd.store.postgres import PostgresStore
from bgjobs.model import JobState, Outcome, PauseKind, Priority
from tests.store.support import PG_DSN, attempt, new_job

NO_LIMITS: dict[str, int] = {}


def _queued(store: Store, count: int, *, past: float) -> list[int]:
    """`count` jobs in a mixed order of priority and due time; their claim order."""
    made: list[tuple[int, float, int]] = []
    for number in range(count):
        priority = (Priority.LOW, Priority.MEDIUM, Priority.HIGH)[number % 3]
        run_at = past + (number * 7) % 5
        job_id = store.add([new_job(f"Job{number}", priority=priority, run_at=run_at)])[0]
        made.append((priority.rank, run_at, job_id))
    store.commit()
    return [job_id for *_, job_id in sorted(made)]


def state_of(store: Store, job_id: int) -> JobState:
    job = store.get(job_id)
    assert job is not None
    return job.state


def test_a_batch_takes_the_jobs_claims_one_by_one_would_each_for_its_worker(
    store: Store,
) -> None:
    order = _queued(store, 7, past=time.time() - 100)
    now = time.time()
    jobs = store.claim_batch("node-b", [501, 502, 503], now, NO_LIMITS)
    assert [job.id for job in jobs] == order[:3]
    assert sorted(job.worker_pid for job in jobs if job.worker_pid) == [501, 502, 503]
    for job in jobs:
        assert job.state is JobState.RUNNING and job.attempts == 1 and job.owner == "node-b"
        assert store.attempt_is_current(job.id, "node-b", 1)
        stored = store.get(job.id)
        assert stored is not None and stored.worker_pid == job.worker_pid
    store.commit()
    # More workers than jobs: the rest, and no more.
    rest = store.claim_batch("node-b", [504, 505, 506, 507, 508], now, NO_LIMITS)
    assert [job.id for job in rest] == order[3:]
    assert store.claim_batch("node-b", [509, 510], now, NO_LIMITS) == []


def test_a_batch_passes_over_paused_oneshot_and_other_queues_jobs(store: Store) -> None:
    now = time.time()
    store.add([new_job("Held", run_at=now - 9)])
    store.add([new_job("Mine", oneshot=True, run_at=now - 8)])
    store.add([new_job("Elsewhere", queue="mail", run_at=now - 7)])
    wanted = [store.add([new_job("Free", run_at=now - 6 + n)])[0] for n in range(2)]
    store.pause(PauseKind.CLASS, "Held", now)
    store.commit()
    jobs = store.claim_batch("n1", [1, 2, 3], now, NO_LIMITS)
    assert [job.id for job in jobs] == wanted


def test_a_batch_with_limits_counts_each_class_as_claims_one_by_one(store: Store) -> None:
    now = time.time()
    limited = [store.add([new_job("Limited", run_at=now - 9 + n)])[0] for n in range(3)]
    other = store.add([new_job("Other", run_at=now)])[0]
    store.commit()
    jobs = store.claim_batch("n1", [1, 2, 3], now, {"Limited": 1})
    assert [job.id for job in jobs] == [limited[0], other]


def test_a_batch_skips_the_rows_another_connections_open_claim_holds(
    store: Store, peer: Store
) -> None:
    order = _queued(store, 6, past=time.time() - 100)
    now = time.time()
    theirs = peer.claim_batch("peer", [11, 12], now, NO_LIMITS)  # open: their rows locked
    if isinstance(store, PostgresStore):
        ours = store.claim_batch("me", [21, 22, 23], now, NO_LIMITS)
        assert {job.id for job in ours}.isdisjoint(job.id for job in theirs)
        assert [job.id for job in theirs + ours] == order[:5]
        store.commit()
    peer.commit()
    taken = [job.id for job in theirs]
    assert taken == order[:2]
    assert all(state_of(store, job_id) is JobState.RUNNING for job_id in taken)


def test_a_batch_lost_with_the_connection_is_redone_job_by_job(store: Store) -> None:
    if not isinstance(store, PostgresStore):
        return  # SQLite has no connection to lose: its batch is claims one by one
    order = _queued(store, 4, past=time.time() - 100)
    now = time.time()
    jobs = store.claim_batch("me", [31, 32, 33], now, NO_LIMITS)
    assert [job.id for job in jobs] == order[:3]
    with psycopg.connect(PG_DSN, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (store._db.info.backend_pid,))
    deadline = time.monotonic() + 15
    while True:
        try:
            store.commit()  # meets the loss, then reconnects and redoes the claims
            break
        except StoreOffline:  # until the reconnection is due
            assert time.monotonic() < deadline, "the store did not reconnect"
            time.sleep(0.05)
    if store.in_transaction:
        store.commit()
    assert store.lost_claims() == []
    for job in jobs:
        again = store.get(job.id)
        assert again is not None and again.state is JobState.RUNNING
        assert again.owner == "me" and again.worker_pid == job.worker_pid
        assert again.attempts == 1
    assert state_of(store, order[3]) is JobState.QUEUED


def test_a_claim_that_finds_nothing_tells_no_other_process(store: Store, peer: Store) -> None:
    """Else idle nodes would wake each other for ever: each one's empty claim a notice to
    the others, whose empty claims notify it back."""
    store.add([new_job("Running")])
    store.commit()
    assert store.claim_batch("me", [1], time.time(), NO_LIMITS)
    store.commit()
    peer.changed()
    assert store.claim_batch("me", [2, 3], time.time(), NO_LIMITS) == []
    assert store.claim_next("me", 4, time.time(), NO_LIMITS) is None
    store.commit()
    assert not peer.changed()


def test_a_claim_along_an_end_takes_the_next_job_for_that_worker(store: Store) -> None:
    """PostgreSQL sends a worker's next claim with its attempt's end (one round trip): the
    job a claim would take, started for that worker; a stale end (its attempt reclaimed)
    still hands over the job claimed with it; an end that is not final claims nothing, and
    the request ends with `claimed_along`. SQLite has no round trip to save: nothing is
    asked."""
    order = _queued(store, 4, past=time.time() - 100)
    (first,) = store.claim_batch("me", [41], time.time(), NO_LIMITS)
    if not store.claim_along_next_end("me", 41, first.queue, time.time()):
        assert not isinstance(store, PostgresStore)
        assert store.claimed_along() is None
        return
    done = store.finish_attempt(
        first.id, attempt(1, Outcome.SUCCEEDED, owner="me"), JobState.SUCCEEDED
    )
    assert done.state is JobState.SUCCEEDED
    second = store.claimed_along()
    assert second is not None and [first.id, second.id] == order[:2]
    assert second.state is JobState.RUNNING and second.worker_pid == 41
    assert store.claimed_along() is None, "one request, one job"
    # Stale: another owner's attempt. The end is refused; the job claimed with it is ours.
    assert store.claim_along_next_end("me", 42, first.queue, time.time())
    with pytest.raises(StaleAttempt):
        store.finish_attempt(
            second.id, attempt(1, Outcome.SUCCEEDED, owner="someone else"), JobState.SUCCEEDED
        )
    third = store.claimed_along()
    assert third is not None and third.id == order[2] and third.worker_pid == 42
    # Not final (a retry): no claim, and the request is over.
    assert store.claim_along_next_end("me", 43, first.queue, time.time())
    store.finish_attempt(
        third.id,
        attempt(1, Outcome.FAILED, owner="me"),
        JobState.SCHEDULED,
        run_at=time.time() + 60,
    )
    assert store.claimed_along() is None
    store.finish_attempt(second.id, attempt(1, Outcome.SUCCEEDED, owner="me"), JobState.SUCCEEDED)
    assert state_of(store, order[3]) is JobState.QUEUED
    store.commit()


def test_a_claim_along_an_end_lost_with_the_connection_is_redone(store: Store) -> None:
    if not isinstance(store, PostgresStore):
        return  # nothing is claimed along an end on SQLite
    order = _queued(store, 2, past=time.time() - 100)
    (first,) = store.claim_batch("me", [51], time.time(), NO_LIMITS)
    store.commit()
    assert store.claim_along_next_end("me", 51, first.queue, time.time())
    store.finish_attempt(first.id, attempt(1, Outcome.SUCCEEDED, owner="me"), JobState.SUCCEEDED)
    second = store.claimed_along()
    assert second is not None and second.id == order[1]
    with psycopg.connect(PG_DSN, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (store._db.info.backend_pid,))
    deadline = time.monotonic() + 15
    while True:
        try:
            store.commit()  # meets the loss, reconnects, redoes the end and the claim
            break
        except StoreOffline:
            assert time.monotonic() < deadline, "the store did not reconnect"
            time.sleep(0.05)
    if store.in_transaction:
        store.commit()
    assert store.lost_claims() == []
    assert state_of(store, first.id) is JobState.SUCCEEDED
    again = store.get(second.id)
    assert again is not None and again.state is JobState.RUNNING
    assert again.owner == "me" and again.worker_pid == 51 and again.attempts == 1
