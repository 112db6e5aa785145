"""The store contract: every backend passes these (SQLite and PostgreSQL: the `store` and
`backend` fixtures run each test on both). The tests marked `sqlite_only` upgrade older
SQLite databases: PostgreSQL's schema starts at its own version 1."""

from __future__ import annotations

import re
import sqlite3
import time
from pathlib import Path

import pytest

from bgjobd.store.base import (
    AttemptOutput,
    JobQuery,
    KeyTaken,
    PruneRules,
    Store,
    StoredOutput,
)
from bgjobd.store.sqlite import SCHEMA, SQLiteStore
from bgjobs.model import ErrorInfo, JobState, Outcome, Priority
from tests.store.support import Backend, attempt, new_job

OLD_SQLITE = pytest.mark.sqlite_only("upgrades a database of an older SQLite schema")


def test_ids_increase_and_survive_reopening(backend: Backend, tmp_path: Path) -> None:
    first = backend(tmp_path)
    ids = [first.add([new_job()])[0] for _ in range(3)]
    first.commit()
    first.close()
    again = backend(tmp_path)
    assert ids == sorted(ids) and len(set(ids)) == 3
    assert again.add([new_job()])[0] > ids[-1]
    assert again.get(ids[0]) is not None
    again.close()


def test_uncommitted_writes_vanish_on_rollback(store: Store) -> None:
    job_id = store.add([new_job()])[0]
    store.rollback()
    assert store.get(job_id) is None


def test_round_trip_of_every_field(store: Store) -> None:
    job_id = store.add([new_job(params=[1, "x", {"k": [None, 2.5]}], priority=Priority.HIGH)])[0]
    store.commit()
    job = store.get(job_id)
    assert job is not None
    assert job.params == [1, "x", {"k": [None, 2.5]}]
    assert job.priority is Priority.HIGH and job.state is JobState.QUEUED
    assert job.max_attempts == 3 and job.timeout == 30.0 and job.attempts == 0
    assert job.created_at.tzinfo is not None


def test_claim_only_once_and_only_when_queued(store: Store) -> None:
    job_id = store.add([new_job()])[0]
    claimed = store.claim(job_id, "me", 123, time.time())
    assert claimed is not None and claimed.state is JobState.RUNNING and claimed.attempts == 1
    assert store.claim(job_id, "other", 456, time.time()) is None
    scheduled = store.add([new_job(state=JobState.SCHEDULED, run_at=time.time() + 60)])[0]
    assert store.claim(scheduled, "me", 1, time.time()) is None
    due = store.claim(scheduled, "me", 1, time.time() + 61)  # due: no need to queue it first
    assert due is not None and due.state is JobState.RUNNING
    cancelled = store.add([new_job(state=JobState.SCHEDULED)])[0]
    store.cancel_waiting(cancelled, "by test", time.time())
    assert store.claim(cancelled, "me", 1, time.time() + 61) is None


def test_attempt_history_and_final_states(store: Store) -> None:
    job_id = store.add([new_job()])[0]
    store.claim(job_id, "me", 1, time.time())
    error = ErrorInfo(type="ValueError", message="boom", traceback="tb", hierarchy=["ValueError"])
    retry_at = time.time() + 5
    after = store.finish_attempt(
        job_id, attempt(1, Outcome.FAILED, error), JobState.SCHEDULED, run_at=retry_at
    )
    assert after.state is JobState.SCHEDULED and after.error == error
    assert abs(after.run_at.timestamp() - retry_at) < 0.001
    store.promote([job_id])
    store.claim(job_id, "me", 2, time.time())
    done = store.finish_attempt(
        job_id, attempt(2, Outcome.SUCCEEDED), JobState.SUCCEEDED, result={"ok": True}
    )
    assert done.state is JobState.SUCCEEDED and done.result == {"ok": True}
    assert done.finished_at is not None
    job = store.get(job_id)
    assert job is not None
    assert [(a.number, a.outcome) for a in job.history] == [
        (1, Outcome.FAILED),
        (2, Outcome.SUCCEEDED),
    ]
    assert job.history[0].error == error and job.history[1].worker_pid == 2


def test_an_attempt_can_be_given_back(store: Store) -> None:
    job_id = store.add([new_job()])[0]
    store.claim(job_id, "me", 1, time.time())
    back = store.finish_attempt(
        job_id, attempt(1, Outcome.INTERRUPTED), JobState.QUEUED, count_attempt=False
    )
    assert back.attempts == 0 and back.state is JobState.QUEUED


def test_a_job_can_start_as_it_is_stored(store: Store) -> None:
    now = time.time()
    job_id = store.add([new_job(state=JobState.RUNNING, started_at=now, worker_pid=77)])[0]
    job = store.get(job_id)
    assert job is not None and job.state is JobState.RUNNING and job.attempts == 1
    assert job.worker_pid == 77 and [a.number for a in job.history] == [1]
    assert store.claim(job_id, "me", 1, now) is None  # already running: no second claim
    assert store.counts()[JobState.RUNNING] == 1
    done = store.finish_attempt(job_id, attempt(1, Outcome.SUCCEEDED), JobState.SUCCEEDED)
    assert done.state is JobState.SUCCEEDED and done.worker_pid is None


def test_history_survives_rounds_of_retries(store: Store) -> None:
    """Each round's final attempt keeps its outcome, worker and (for a failure) its error
    when a user retries the job and again when the retry ends."""
    job_id = store.add([new_job()])[0]
    boom = ErrorInfo(type="ValueError", message="boom", hierarchy=["ValueError"])
    store.claim(job_id, "me", 11, time.time())
    store.finish_attempt(job_id, attempt(1, Outcome.FAILED, boom), JobState.FAILED)
    store.requeue(job_id, time.time())
    store.claim(job_id, "me", 12, time.time())
    store.finish_attempt(job_id, attempt(1, Outcome.CANCELLED), JobState.CANCELLED)
    store.requeue(job_id, time.time())
    store.claim(job_id, "me", 13, time.time())
    store.finish_attempt(job_id, attempt(1, Outcome.SUCCEEDED), JobState.SUCCEEDED)
    job = store.get(job_id)
    assert job is not None
    summary = [(a.label, a.outcome, a.worker_pid, a.error) for a in job.history]
    assert summary == [
        ("1", Outcome.FAILED, 11, boom),
        ("1 (retry 1)", Outcome.CANCELLED, 12, None),
        ("1 (retry 2)", Outcome.SUCCEEDED, 13, None),
    ]
    assert all(a.finished_at is not None and a.duration is not None for a in job.history)


def test_cancel_only_waiting_jobs(store: Store) -> None:
    waiting = store.add([new_job()])[0]
    running = store.add([new_job()])[0]
    store.claim(running, "me", 1, time.time())
    cancelled = store.cancel_waiting(waiting, "by test", time.time())
    assert cancelled is not None and cancelled.state is JobState.CANCELLED
    assert cancelled.reason == "by test"
    assert store.cancel_waiting(running, "by test", time.time()) is None
    assert store.cancel_waiting(waiting, "again", time.time()) is None


def test_requeue_resets_attempts(store: Store) -> None:
    job_id = store.add([new_job()])[0]
    store.claim(job_id, "me", 1, time.time())
    store.finish_attempt(job_id, attempt(1, Outcome.FAILED), JobState.FAILED)
    again = store.requeue(job_id, time.time())
    assert again is not None and again.state is JobState.QUEUED and again.attempts == 0
    assert store.requeue(job_id, time.time()) is None  # not failed now
    store.claim(job_id, "me", 2, time.time())
    job = store.get(job_id)
    assert job is not None
    assert [(a.number, a.round, a.label) for a in job.history] == [
        (1, 1, "1"),
        (1, 2, "1 (retry 1)"),
    ]


def test_scheduled_window_is_keyed_by_time_then_id(store: Store) -> None:
    base = time.time() + 100
    ids = [store.add([new_job(state=JobState.SCHEDULED, run_at=base + i % 3)])[0] for i in range(9)]
    store.add([new_job(state=JobState.SCHEDULED, run_at=base, oneshot=True)])
    first = store.scheduled(None, 4)
    keys = [(e.run_at, e.job_id) for e in first]
    assert keys == sorted(keys) and len(first) == 4
    rest = store.scheduled((first[-1].run_at, first[-1].job_id), 100)
    assert {e.job_id for e in first} | {e.job_id for e in rest} == set(ids)
    assert not {e.job_id for e in first} & {e.job_id for e in rest}


def test_promote_moves_only_scheduled_jobs(store: Store) -> None:
    due = store.add([new_job(state=JobState.SCHEDULED)])[0]
    gone = store.add([new_job(state=JobState.SCHEDULED)])[0]
    store.cancel_waiting(gone, "x", time.time())
    assert store.promote([due, gone]) == [due]
    assert [e.job_id for e in store.queued()] == [due]


def test_counts_are_exact_per_state(store: Store) -> None:
    ids = [store.add([new_job()])[0] for _ in range(4)]
    store.claim(ids[0], "me", 1, time.time())
    store.cancel_waiting(ids[1], "x", time.time())
    counts = store.counts()
    assert counts[JobState.QUEUED] == 2
    assert counts[JobState.RUNNING] == 1
    assert counts[JobState.CANCELLED] == 1
    assert sum(counts.values()) == 4


def test_search_filters_and_pages(store: Store) -> None:
    for index in range(5):
        store.add([new_job("Echo", params=[f"item-{index}"])])
    store.add([new_job("Other", params=["needle"])])
    jobs, total = store.search(JobQuery(class_name="Echo", limit=2))
    assert total == 5 and [job.params[0] for job in jobs] == ["item-4", "item-3"]
    jobs, total = store.search(JobQuery(class_name="Echo", limit=2, offset=4))
    assert [job.params[0] for job in jobs] == ["item-0"]
    jobs, total = store.search(JobQuery(search="needle"))
    assert total == 1 and jobs[0].class_name == "Other"
    jobs, _ = store.search(JobQuery(search="3"))  # job 3 by id, job 4 by its "item-3"
    assert [job.id for job in jobs] == [4, 3]
    jobs, total = store.search(JobQuery(states=[JobState.QUEUED]))
    assert total == 6


def test_chains_are_stored_whole(store: Store) -> None:
    ids = store.add(
        [
            new_job("A", chain_position=1, chain_length=3),
            new_job("B", state=JobState.WAITING, chain_position=2, chain_length=3),
            new_job("C", state=JobState.WAITING, chain_position=3, chain_length=3),
        ]
    )
    chain = store.chain(ids[0])
    assert [job.class_name for job in chain] == ["A", "B", "C"]
    assert all(job.chain_id == ids[0] for job in chain)
    released = store.release_link(ids[1], ["result", "own"], time.time())
    assert released is not None and released.state is JobState.QUEUED
    assert released.params == ["result", "own"]
    assert store.mark_cancelled([ids[2]], "link failed", time.time()) == [ids[2]]
    store.set_waiting([ids[2]])
    assert store.get(ids[2]).state is JobState.WAITING  # type: ignore[union-attr]


def test_live_unique_keys(store: Store) -> None:
    job_id = store.add([new_job(unique_key="k1")])[0]
    assert store.find_live_unique("k1") == job_id
    store.cancel_waiting(job_id, "x", time.time())
    assert store.find_live_unique("k1") is None


def test_oneshot_jobs_are_never_the_daemons(store: Store) -> None:
    store.add([new_job(oneshot=True)])
    store.add([new_job(state=JobState.SCHEDULED, oneshot=True)])
    assert store.queued() == [] and store.scheduled(None, 10) == []
    assert len(store.unfinished_oneshots()) == 2


def test_finished_per_minute(store: Store) -> None:
    job_id = store.add([new_job()])[0]
    store.claim(job_id, "me", 1, time.time())
    store.finish_attempt(job_id, attempt(1, Outcome.SUCCEEDED), JobState.SUCCEEDED)
    rows = store.finished_per_minute(time.time() - 3600)
    assert [(state, count) for _, state, count in rows] == [(JobState.SUCCEEDED, 1)]


@OLD_SQLITE
def test_a_schema_1_database_is_upgraded_in_place(tmp_path: Path) -> None:
    """A database of schema 1 (no jobs.outcome; every attempt in `attempts`) opens, keeps
    its history as it was, and records new jobs the new way."""
    path = tmp_path / "bgjobs.db"
    old = sqlite3.connect(path)
    old.executescript(older_schema(1))
    old.execute(
        "INSERT INTO jobs (id, class_name, method, params, priority, state, run_at, attempts, "
        "max_attempts, timeout, created_at, started_at, finished_at) "
        "VALUES (1, 'Echo', 'handle', X'90', 1, 'succeeded', 1.0, 1, 3, 30, 1.0, 2.0, 3.0)"
    )
    old.execute(
        "INSERT INTO attempts (job_id, number, started_at, finished_at, outcome, duration) "
        "VALUES (1, 1, 2.0, 3.0, 'succeeded', 1.0)"
    )
    old.commit()
    old.close()
    store = SQLiteStore(path)
    try:
        job = store.get(1)
        assert job is not None and [a.outcome for a in job.history] == [Outcome.SUCCEEDED]
        fresh = store.add([new_job()])[0]
        store.claim(fresh, "me", 5, time.time())
        store.finish_attempt(fresh, attempt(1, Outcome.SUCCEEDED), JobState.SUCCEEDED)
        store.commit()
        again = store.get(fresh)
        assert again is not None and [a.worker_pid for a in again.history] == [5]
    finally:
        store.close()
    check = sqlite3.connect(path)
    assert check.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == ("8",)
    check.close()


def older_schema(version: int) -> str:
    """schema.sql as it was: version 7 lacks jobs.queue (and had jobs_ready), 6 also
    jobs.limit_key, 5 also jobs.cancel_reason and attempts.node, 4 also the batch columns,
    3 also jobs.trace, 2 also jobs.idempotency_key, 1 also jobs.outcome."""
    text = SCHEMA.read_text().replace("'schema_version', '8'", f"'schema_version', '{version}'")
    # The last column goes with the comma before it.
    text, dropped = re.subn(r",(\s+--[^\n]*)\n\s+queue TEXT[^\n]*\n", r"\1\n", text)
    assert dropped == 1
    text += (
        "CREATE INDEX IF NOT EXISTS jobs_ready ON jobs (priority, run_at, id) "
        "WHERE state = 'queued' AND oneshot = 0;\n"
    )
    if version == 7:
        return text
    text, dropped = re.subn(r",(\s+--[^\n]*)\n\s+limit_key TEXT[^\n]*\n", r"\1\n", text)
    assert dropped == 1
    if version == 6:
        return text
    for column in ("cancel_reason TEXT", "node TEXT"):
        text, dropped = re.subn(rf",(\s+--[^\n]*)\n\s+{column}[^\n]*\n", r"\1\n", text)
        assert dropped == 1
    if version == 5:
        return text
    for column in ("batch_on_failure INTEGER", "batch_id INTEGER"):
        text, dropped = re.subn(rf",(\s+--[^\n]*)\n\s+{column}[^\n]*\n", r"\1\n", text)
        assert dropped == 1
    if version == 4:
        return text
    text, dropped = re.subn(r",(\s+--[^\n]*)\n\s+trace BLOB[^\n]*\n", r"\1\n", text)
    assert dropped == 1
    if version == 3:
        return text
    text, dropped = re.subn(r",(\s+--[^\n]*)\n\s+idempotency_key TEXT[^\n]*\n", r"\1\n", text)
    assert dropped == 1
    if version == 1:
        text, dropped = re.subn(r",(\s+--[^\n]*)\n\s+outcome TEXT[^\n]*\n", r"\1\n", text)
        assert dropped == 1
    return text


@OLD_SQLITE
def test_a_schema_2_database_gains_idempotency_keys(tmp_path: Path) -> None:
    """A database of schema 2 opens with its jobs as they were, and from then on keeps one
    job per key."""
    path = tmp_path / "bgjobs.db"
    old = sqlite3.connect(path)
    old.executescript(older_schema(2))
    old.execute(
        "INSERT INTO jobs (id, class_name, method, params, priority, state, run_at, "
        "max_attempts, timeout, created_at) VALUES (1, 'Echo', 'handle', X'90', 1, 'queued', "
        "1.0, 3, 30, 1.0)"
    )
    old.commit()
    old.close()
    store = SQLiteStore(path)
    try:
        job = store.get(1)
        assert job is not None and job.key is None
        first = store.add([new_job(key="k")])
        with pytest.raises(KeyTaken):
            store.add([new_job(key="k")])
        store.commit()
        assert store.find_by_key("k") == first
    finally:
        store.close()
    check = sqlite3.connect(path)
    assert check.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == ("8",)
    check.close()


def test_one_job_per_idempotency_key(store: Store) -> None:
    """A second add with a stored key inserts nothing and names the stored job, in any
    state; other jobs of the same transaction are kept."""
    first = store.add([new_job(key="k1")])
    assert store.find_by_key("k1") == first
    with pytest.raises(KeyTaken) as taken:
        store.add([new_job("Other", key="k1")])
    assert taken.value.job_ids == first
    kept = store.add([new_job(key="k2")])
    store.commit()
    assert store.find_by_key("k2") == kept
    assert store.get(first[0]).key == "k1"  # type: ignore[union-attr]
    store.claim(first[0], "me", 1, time.time())
    store.finish_attempt(first[0], attempt(1, Outcome.SUCCEEDED), JobState.SUCCEEDED)
    with pytest.raises(KeyTaken):
        store.add([new_job(key="k1")])
    store.commit()
    assert store.counts()[JobState.SUCCEEDED] == 1
    assert sum(store.counts().values()) == 2
    assert store.find_by_key("nope") is None
    unkeyed = [store.add([new_job()])[0] for _ in range(2)]
    assert len(set(unkeyed)) == 2


def test_a_chain_is_found_by_its_key(store: Store) -> None:
    ids = store.add(
        [
            new_job("A", chain_position=1, chain_length=2, key="chain"),
            new_job("B", state=JobState.WAITING, chain_position=2, chain_length=2),
        ]
    )
    store.commit()
    assert store.find_by_key("chain") == ids
    with pytest.raises(KeyTaken) as taken:
        store.add(
            [
                new_job("A", chain_position=1, chain_length=2, key="chain"),
                new_job("B", state=JobState.WAITING, chain_position=2, chain_length=2),
            ]
        )
    assert taken.value.job_ids == ids
    store.commit()
    assert len(store.chain(ids[0])) == 2


def test_a_key_stored_by_another_process_is_taken(store: Store, peer: Store) -> None:
    """Two stores on one database (the daemon and run_job.py): the second add of a key
    fails, whichever process made the first."""
    ids = store.add([new_job(key="shared")])
    store.commit()
    with pytest.raises(KeyTaken) as taken:
        peer.add([new_job(key="shared")])
    assert taken.value.job_ids == ids
    kept = peer.add([new_job(key="other")])  # the refusal left the transaction usable
    peer.commit()
    assert store.find_by_key("other") == kept


def test_a_batch_is_stored_whole_and_counted(store: Store) -> None:
    """A batch: its callback first (waiting, its id the batch's), then its members."""
    ids = store.add(
        [
            new_job("Callback", state=JobState.WAITING, batch_callback=True),
            new_job("A"),
            new_job("B", state=JobState.SCHEDULED, run_at=time.time() + 60),
        ]
    )
    callback = store.get(ids[0])
    assert callback is not None and callback.is_batch_callback
    assert not callback.run_callback_on_failure
    members = store.batch_members(ids[0])
    assert [job.id for job in members] == ids[1:]
    assert all(job.batch_id == ids[0] and not job.is_batch_callback for job in members)
    assert store.batch_pending(ids[0])
    store.claim(ids[1], "me", 5, time.time())
    store.finish_attempt(ids[1], attempt(1, Outcome.SUCCEEDED), JobState.SUCCEEDED, result=7)
    assert store.batch_pending(ids[0])
    assert store.cancel_waiting(ids[2], "no", time.time()) is not None
    assert not store.batch_pending(ids[0])
    assert [job.result for job in store.batch_members(ids[0])] == [7, None]
    released = store.release_link(ids[0], [[7, None]], time.time())
    assert released is not None and released.params == [[7, None]]
    assert store.release_link(ids[0], [[7, None]], time.time()) is None  # once only
    store.commit()
    assert store.get(ids[2]).batch_id == ids[0]  # type: ignore[union-attr]


def test_a_batch_keeps_whether_its_callback_runs_after_a_failure(store: Store) -> None:
    ids = store.add(
        [
            new_job(
                "Callback",
                state=JobState.WAITING,
                batch_callback=True,
                run_callback_on_failure=True,
                key="batch-key",
            ),
            new_job("A"),
        ]
    )
    assert store.get(ids[0]).run_callback_on_failure  # type: ignore[union-attr]
    assert store.get(ids[1]).run_callback_on_failure is False  # type: ignore[union-attr]
    assert store.find_by_key("batch-key") == [ids[0]]
    plain = store.add([new_job()])
    assert store.get(plain[0]).batch_id is None  # type: ignore[union-attr]
    assert store.batch_members(plain[0]) == []


@OLD_SQLITE
def test_a_schema_3_database_gains_trace_contexts(tmp_path: Path) -> None:
    """A database of schema 3 opens with its jobs as they were (no trace), and from then on
    keeps each job's trace context."""
    path = tmp_path / "bgjobs.db"
    old = sqlite3.connect(path)
    old.executescript(older_schema(3))
    old.execute(
        "INSERT INTO jobs (id, class_name, method, params, priority, state, run_at, "
        "max_attempts, timeout, created_at) VALUES (1, 'Echo', 'handle', X'90', 1, 'queued', "
        "1.0, 3, 30, 1.0)"
    )
    old.commit()
    old.close()
    store = SQLiteStore(path)
    try:
        job = store.get(1)
        assert job is not None and job.trace is None
        traced = store.add([new_job(trace=TRACE)])[0]
        store.commit()
        assert store.get(traced).trace == TRACE  # type: ignore[union-attr]
    finally:
        store.close()
    check = sqlite3.connect(path)
    assert check.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == ("8",)
    check.close()


TRACE = {
    "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    "tracestate": "congo=t61rcWkgMzE",
}


def test_the_trace_context_stays_with_the_job_and_its_chain(store: Store) -> None:
    """Every link keeps the submitter's trace context, through claims, retries and a
    user's retry."""
    first, second = store.add(
        [new_job(trace=TRACE), new_job("Other", state=JobState.WAITING, trace=TRACE)]
    )
    claimed = store.claim(first, "me", 1, time.time())
    assert claimed is not None and claimed.trace == TRACE
    store.finish_attempt(first, attempt(1, Outcome.FAILED), JobState.FAILED)
    requeued = store.requeue(first, time.time())
    assert requeued is not None and requeued.trace == TRACE
    released = store.release_link(second, [1], time.time())
    assert released is not None and released.trace == TRACE
    untraced = store.add([new_job()])[0]
    store.commit()
    assert store.get(untraced).trace is None  # type: ignore[union-attr]
    assert [job.trace for job in store.chain(first)] == [TRACE, TRACE]


@OLD_SQLITE
def test_a_schema_4_database_gains_batches(tmp_path: Path) -> None:
    path = tmp_path / "bgjobs.db"
    old = sqlite3.connect(path)
    old.executescript(older_schema(4))
    old.execute(
        "INSERT INTO jobs (id, class_name, method, params, priority, state, run_at, "
        "max_attempts, timeout, created_at) VALUES (1, 'Echo', 'handle', X'90', 1, 'queued', "
        "1.0, 3, 30, 1.0)"
    )
    old.commit()
    old.close()
    store = SQLiteStore(path)
    try:
        job = store.get(1)
        assert job is not None and job.batch_id is None
        ids = store.add(
            [new_job("Callback", state=JobState.WAITING, batch_callback=True), new_job("A")]
        )
        store.commit()
        assert store.get(ids[1]).batch_id == ids[0]  # type: ignore[union-attr]
        assert store.batch_pending(ids[0])
    finally:
        store.close()
    check = sqlite3.connect(path)
    assert check.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == ("8",)
    kind = check.execute("SELECT typeof(batch_id) FROM jobs WHERE id = 2").fetchone()
    assert kind == ("integer",)
    check.close()


# outputs ------------------------------------------------------------------------------------


def test_attempt_outputs_are_kept_per_round_and_go_with_their_job(store: Store) -> None:
    job_id = store.add([new_job()])[0]
    other = store.add([new_job()])[0]
    store.claim(job_id, "me", 1, time.time())
    store.keep_output(job_id, 1, AttemptOutput(b"one\n", 4, "host:/a"))
    store.finish_attempt(job_id, attempt(1, Outcome.FAILED), JobState.FAILED)
    store.requeue(job_id, time.time())
    store.claim(job_id, "me", 2, time.time())
    store.keep_output(job_id, 1, AttemptOutput(b"...end\n", 5000, "other:/b"))
    store.finish_attempt(job_id, attempt(1, Outcome.SUCCEEDED), JobState.SUCCEEDED)
    store.commit()
    assert store.stored_outputs(job_id) == [
        StoredOutput(1, 1, AttemptOutput(b"one\n", 4, "host:/a")),
        StoredOutput(2, 1, AttemptOutput(b"...end\n", 5000, "other:/b")),
    ]
    assert store.output_origins(job_id) == {"host:/a", "other:/b"}
    assert store.stored_outputs(other) == [] and store.output_origins(other) == set()
    pruned = store.prune(PruneRules(finished_before={JobState.SUCCEEDED: time.time() + 1}), 10)
    store.commit()
    assert [job.job_id for job in pruned] == [job_id]
    assert store.stored_outputs(job_id) == [] and store.output_origins(job_id) == set()


def test_an_attempt_given_back_and_run_again_replaces_its_output(store: Store) -> None:
    job_id = store.add([new_job()])[0]
    store.claim(job_id, "me", 1, time.time())
    store.keep_output(job_id, 1, AttemptOutput(b"interrupted\n", 12, "h:/s"))
    store.finish_attempt(
        job_id, attempt(1, Outcome.INTERRUPTED), JobState.QUEUED, count_attempt=False
    )
    store.claim(job_id, "me", 2, time.time())
    store.keep_output(job_id, 1, AttemptOutput(b"ran\n", 4, "h:/s"))
    store.commit()
    assert store.stored_outputs(job_id) == [StoredOutput(1, 1, AttemptOutput(b"ran\n", 4, "h:/s"))]


def test_add_each_stores_all_in_order_or_none(store: Store) -> None:
    """A bulk submit's rows (more than one statement's worth): their ids in order; with
    one idempotency key taken, in a later statement than the first, nothing at all."""
    rows = [new_job(params=[n], key=f"bulk-{n}") for n in range(1500)]
    ids = store.add_each(rows)
    store.commit()
    if ids is None:  # this backend has no bulk path: the caller adds them one by one
        assert store.counts().get(JobState.QUEUED, 0) == 0
        return
    assert len(ids) == len(rows) and ids == sorted(set(ids))
    for index in (0, 681, 682, 1499):
        job = store.get(ids[index])
        assert job is not None and job.params == [index] and job.key == f"bulk-{index}"
    assert store.counts()[JobState.QUEUED] == len(rows)
    clashing = [new_job(params=[n], key=f"more-{n}") for n in range(1000)]
    clashing[900] = new_job(key="bulk-7")
    assert store.add_each(clashing) is None
    store.commit()
    assert store.counts()[JobState.QUEUED] == len(rows)
    assert store.find_by_key("more-1") is None
