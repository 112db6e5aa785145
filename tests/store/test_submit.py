"""`Store.submit`: a client's submit as the daemon stores it. A fast-path row (RUNNING, its
worker given) goes in as queued when any pause is stored, by this connection or another;
keys and unique jobs are refused as `add` refuses them; and on PostgreSQL a lone submit
outside a transaction is committed by its own statement. Runs against every backend."""

from __future__ import annotations

import time
from dataclasses import replace

import psycopg
import pytest

from bgjobd.store.base import KeyTaken, NewJob, Store, UniqueTaken
from bgjobd.store.offline import KeyHeld
from bgjobd.store.postgres import SUBMIT_LOCK_WAIT, PostgresStore
from bgjobs.model import JobState, PauseKind
from tests.store.support import new_job

WORKER_PID = 4242


def started_row(class_name: str = "Echo", *, key: str | None = None) -> NewJob:
    """A row of the fast path: due now, stored as running with an idle worker."""
    return new_job(
        class_name, state=JobState.RUNNING, started_at=time.time(), worker_pid=WORKER_PID, key=key
    )


def test_a_queued_job_is_stored_as_add_stores_it(store: Store) -> None:
    added = store.submit([new_job("Echo")])
    store.commit()
    assert not added.started
    job = store.get(added.ids[0])
    assert job is not None and job.state is JobState.QUEUED and job.attempts == 0


def test_a_fast_path_row_is_stored_running_while_nothing_is_paused(store: Store) -> None:
    added = store.submit([started_row()])
    store.commit()
    assert added.started
    job = store.get(added.ids[0])
    assert job is not None and job.state is JobState.RUNNING
    assert job.attempts == 1 and job.worker_pid == WORKER_PID and job.started_at is not None


def test_a_pause_committed_by_another_connection_holds_for_the_very_next_submit(
    store: Store, peer: Store
) -> None:
    """Another node's pause, committed: this connection's next fast-path row waits queued
    for a claim (which checks pauses), whatever this connection knew of pauses before; the
    resume, committed, lets the next one start at once again."""
    assert store.submit([started_row()]).started  # what this connection knew: no pause
    store.commit()

    peer.pause(PauseKind.CLASS, "Slow", time.time())
    peer.commit()
    added = store.submit([started_row("Echo")])
    store.commit()
    assert not added.started
    job = store.get(added.ids[0])
    assert job is not None and job.state is JobState.QUEUED
    assert job.attempts == 0 and job.worker_pid is None and job.started_at is None

    peer.resume(PauseKind.CLASS, "Slow")
    peer.commit()
    assert store.submit([started_row()]).started
    store.commit()


def test_this_connections_own_pause_holds_before_its_commit(store: Store) -> None:
    store.pause(PauseKind.ALL, "", time.time())
    added = store.submit([started_row()])
    store.commit()
    assert not added.started


def test_a_taken_key_is_refused_with_the_job_holding_it(store: Store, peer: Store) -> None:
    first = store.submit([new_job(key="order-1")], alone=True)
    store.commit()
    with pytest.raises(KeyTaken) as taken:
        peer.submit([started_row(key="order-1")], alone=True)
    assert taken.value.job_ids == first.ids
    # Nothing of it is left behind, and the connection goes on.
    other = peer.submit([new_job(key="order-2")])
    peer.commit()
    assert store.find_by_key("order-2") == other.ids
    assert store.counts()[JobState.QUEUED] == 2


def test_an_equal_live_unique_job_is_refused_with_its_id(store: Store, peer: Store) -> None:
    first = store.submit([new_job(unique_key="report")])
    store.commit()
    with pytest.raises(UniqueTaken) as taken:
        peer.submit([new_job(unique_key="report")], alone=True)
    assert taken.value.job_id == first.ids[0]
    peer.commit()


def test_a_lone_submit_is_committed_if_the_store_says_so(store: Store, peer: Store) -> None:
    added = store.submit([new_job()], alone=True)
    if added.committed:
        assert peer.get(added.ids[0]) is not None
    store.commit()
    assert peer.get(added.ids[0]) is not None


def claimed(store: Store) -> int:
    job = store.claim_next("n1", WORKER_PID, time.time(), {})
    assert job is not None, "nothing was claimed"
    return job.id


def state_of(store: Store, job_id: int) -> JobState | None:
    job = store.get(job_id)
    return None if job is None else job.state


@pytest.mark.parametrize("backend_name", ["postgresql"], indirect=True)
def test_on_postgresql_a_lone_submit_commits_by_itself_or_with_the_open_writes(
    store: Store, peer: Store
) -> None:
    assert isinstance(store, PostgresStore)
    alone = store.submit([new_job()], alone=True)
    assert alone.committed and not store.in_transaction
    assert peer.get(alone.ids[0]) is not None  # before any commit of this connection's

    not_alone = store.submit([new_job()])
    assert not not_alone.committed and store.in_transaction
    assert peer.get(not_alone.ids[0]) is None
    store.commit()

    # The daemon's other writes are open (a claim): a lone submit commits them with it.
    job_id = claimed(store)
    assert store.in_transaction and state_of(peer, job_id) is JobState.QUEUED
    with_them = store.submit([new_job()], alone=True)
    assert with_them.committed and not store.in_transaction
    assert state_of(peer, job_id) is JobState.RUNNING
    assert state_of(peer, with_them.ids[0]) is JobState.QUEUED


@pytest.mark.parametrize("backend_name", ["postgresql"], indirect=True)
def test_on_postgresql_a_lone_submit_that_fails_keeps_the_open_writes(
    store: Store, peer: Store
) -> None:
    """Its INSERT fails the transaction it was to commit: the other writes of that
    transaction are redone at once in a new one, which the next commit makes durable."""
    assert isinstance(store, PostgresStore)
    store.add([new_job()])
    store.commit()
    job_id = claimed(store)
    with pytest.raises(psycopg.errors.NotNullViolation):
        store.submit([replace(new_job(), class_name=None)], alone=True)  # type: ignore[arg-type]
    assert store.in_transaction
    store.commit()
    assert state_of(peer, job_id) is JobState.RUNNING


@pytest.mark.parametrize("backend_name", ["postgresql"], indirect=True)
@pytest.mark.parametrize("path", ["alone", "with the open writes", "in the transaction"])
def test_on_postgresql_a_key_held_by_an_open_transaction_is_waited_for_briefly(
    store: Store, peer: Store, path: str
) -> None:
    """Another transaction, still open, stored a job with the key (an application's
    `enqueue_in`): the daemon's submit gives up after its short lock wait with KeyHeld, stores
    nothing, and the store's other open writes are redone; the wait was the submit's alone
    (a later write of the transaction waits as long as the session says). Once that
    transaction commits, the key is found."""
    assert isinstance(store, PostgresStore) and isinstance(peer, PostgresStore)
    store.submit_lock_wait = SUBMIT_LOCK_WAIT  # as the daemon's store
    store.add([new_job()])
    store.commit()
    peer.add([new_job(key="held")])  # not committed: the peer's transaction holds the key
    job_id = claimed(store) if path != "alone" else None
    started = time.monotonic()
    with pytest.raises(KeyHeld):
        store.submit([new_job(key="held")], alone=path != "in the transaction")
    assert time.monotonic() - started < 5  # the brief wait, not the peer's transaction
    if job_id is not None:
        assert store.in_transaction  # the claim, redone
        assert store._read("SHOW lock_timeout").fetchone() == ("0",)
        store.commit()
        assert state_of(peer, job_id) is JobState.RUNNING
    peer.commit()
    with pytest.raises(KeyTaken):
        store.submit([new_job(key="held")], alone=True)
    store.submit([new_job()])  # stored inside the transaction: the session's wait after it
    assert store.in_transaction and store._read("SHOW lock_timeout").fetchone() == ("0",)
    store.commit()
