"""Pauses in the store: stored (every process sharing it sees them), skipped by every
claim, and bulk actions' pages of matching ids. Runs against every backend."""

from __future__ import annotations

import time

from bgjobd.store.base import JobQuery, Store
from bgjobs.model import JobState, PauseKind
from tests.store.support import new_job

NO_LIMITS: dict[str, int] = {}


def claimed_ids(store: Store, owner: str = "n1") -> list[int]:
    ids: list[int] = []
    while (job := store.claim_next(owner, 1, time.time(), NO_LIMITS)) is not None:
        ids.append(job.id)
    store.commit()
    return ids


def test_a_paused_class_is_not_claimed_until_resumed(store: Store) -> None:
    held = store.add([new_job("Slow")])[0]
    free = store.add([new_job("Echo")])[0]
    assert store.pause(PauseKind.CLASS, "Slow", time.time())
    store.commit()

    assert claimed_ids(store) == [free]
    assert store.get(held) is not None and store.get(held).state is JobState.QUEUED  # type: ignore[union-attr]

    assert store.resume(PauseKind.CLASS, "Slow")
    store.commit()
    assert claimed_ids(store) == [held]


def test_pausing_all_holds_every_class_and_resuming_releases_them(store: Store) -> None:
    ids = [store.add([new_job(name)])[0] for name in ("Echo", "Slow")]
    assert store.pause(PauseKind.ALL, "", time.time())
    store.commit()
    assert claimed_ids(store) == []
    store.resume(PauseKind.ALL, "")
    store.commit()
    assert claimed_ids(store) == ids


def test_a_pause_holds_for_another_connection(store: Store, peer: Store) -> None:
    """Another process (node) sharing the store obeys the pause from its commit on."""
    job_id = store.add([new_job("Slow")])[0]
    store.pause(PauseKind.CLASS, "Slow", time.time())
    store.commit()
    assert claimed_ids(peer, "n2") == []
    assert [(p.kind, p.name) for p in peer.pauses()] == [(PauseKind.CLASS, "Slow")]
    peer.resume(PauseKind.CLASS, "Slow")
    peer.commit()
    assert claimed_ids(store) == [job_id]


def test_any_paused_follows_every_connections_pauses_and_resumes(store: Store, peer: Store) -> None:
    """What a submit's fast path asks: right after this connection's own pause, resume and
    rollback, and after another connection's commits (SQLite answers it from a cache)."""
    assert not store.any_paused() and not peer.any_paused()
    store.pause(PauseKind.QUEUE, "mail", time.time())
    assert store.any_paused()  # its own, before the commit
    store.rollback()
    assert not store.any_paused()
    store.pause(PauseKind.QUEUE, "mail", time.time())
    store.commit()
    assert store.any_paused() and peer.any_paused()
    peer.resume(PauseKind.QUEUE, "mail")
    assert not peer.any_paused()
    peer.rollback()
    assert peer.any_paused()
    peer.resume(PauseKind.QUEUE, "mail")
    peer.commit()
    assert not store.any_paused() and not peer.any_paused()
    peer.pause(PauseKind.ALL, "", time.time())
    peer.commit()
    assert store.any_paused()


def test_pauses_are_listed_once_each(store: Store) -> None:
    now = time.time()
    assert store.pause(PauseKind.QUEUE, "mail", now)
    assert store.pause(PauseKind.CLASS, "Slow", now)
    assert not store.pause(PauseKind.CLASS, "Slow", now + 5)  # there already: kept as it was
    store.commit()
    listed = store.pauses()
    assert [(p.kind, p.name) for p in listed] == [
        (PauseKind.CLASS, "Slow"),
        (PauseKind.QUEUE, "mail"),
    ]
    assert abs(listed[0].since.timestamp() - now) < 0.001
    assert not store.resume(PauseKind.CLASS, "Other")
    assert store.resume(PauseKind.QUEUE, "mail")
    store.commit()
    assert [p.name for p in store.pauses()] == ["Slow"]


def test_a_queue_pause_holds_back_that_queues_jobs_only(store: Store) -> None:
    """A paused queue's claims take nothing; other queues' claims (of the same class) go
    on; once resumed, its jobs are claimed."""
    mail = store.add([new_job("Echo", queue="mail")])[0]
    default = store.add([new_job("Echo")])[0]
    store.pause(PauseKind.QUEUE, "mail", time.time())
    store.commit()
    assert store.claim_next("n1", 1, time.time(), {}, queue="mail") is None
    assert claimed_ids(store) == [default]
    store.resume(PauseKind.QUEUE, "mail")
    store.commit()
    job = store.claim_next("n1", 1, time.time(), {}, queue="mail")
    assert job is not None and job.id == mail


def test_matching_ids_pages_by_id_through_the_filter(store: Store) -> None:
    slow = [store.add([new_job("Slow")])[0] for _ in range(5)]
    store.add([new_job("Echo")])
    store.add([new_job("Slow", state=JobState.SCHEDULED, run_at=time.time() + 60)])
    store.commit()
    query = JobQuery(states=[JobState.QUEUED], class_name="Slow")
    assert store.matching_ids(query, 0, 3) == slow[:3]
    assert store.matching_ids(query, slow[2], 3) == slow[3:]
    assert store.matching_ids(query, slow[4], 3) == []
    assert len(store.matching_ids(JobQuery(class_name="Slow"), 0, 100)) == 6
