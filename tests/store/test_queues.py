"""Named queues in the store: a claim takes only its queue's jobs, in priority order within
it, whatever the other queues hold; listings and counts per queue; an older database's jobs
are the default queue's."""

from __future__ import annotations

import re
import sqlite3
import time
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from bgjobd.store.base import JobQuery, Store
from bgjobd.store.postgres import SCHEMA as SCHEMA_POSTGRES
from bgjobd.store.postgres import SCHEMA_VERSION
from bgjobd.store.sqlite import SQLiteStore
from bgjobs.model import DEFAULT_QUEUE, JobState, Priority
from tests.store.support import PG_DSN, address_of, new_job, open_store, postgres_unavailable
from tests.store.test_contract import older_schema

NO_LIMITS: dict[str, int] = {}


def claimed_ids(store: Store, queue: str, limits: dict[str, int] | None = None) -> list[int]:
    """Every job claim_next gives for `queue`, in the order it gives them."""
    ids: list[int] = []
    while (
        job := store.claim_next("n1", 1, time.time(), limits or NO_LIMITS, queue=queue)
    ) is not None:
        assert job.queue == queue
        ids.append(job.id)
    return ids


def test_a_claim_takes_only_its_queues_jobs(store: Store) -> None:
    default = store.add([new_job()])[0]
    slow = store.add([new_job(queue="slow")])[0]
    store.commit()

    assert store.claim_next("n1", 1, time.time(), NO_LIMITS, queue="fast") is None
    assert claimed_ids(store, "slow") == [slow]
    assert claimed_ids(store, DEFAULT_QUEUE) == [default]


def test_a_claim_without_a_queue_is_the_default_queues(store: Store) -> None:
    store.add([new_job(queue="slow")])
    default = store.add([new_job()])[0]
    store.commit()

    job = store.claim_next("n1", 1, time.time(), NO_LIMITS)
    assert job is not None and job.id == default and job.queue == DEFAULT_QUEUE
    assert store.claim_next("n1", 1, time.time(), NO_LIMITS) is None


def test_priorities_order_jobs_within_a_queue_not_across_queues(store: Store) -> None:
    past = time.time() - 100
    slow_high = store.add([new_job(queue="slow", priority=Priority.HIGH, run_at=past)])[0]
    fast_low = store.add([new_job(queue="fast", priority=Priority.LOW, run_at=past)])[0]
    fast_late = store.add([new_job(queue="fast", run_at=past + 20)])[0]
    fast_early = store.add([new_job(queue="fast", run_at=past + 10)])[0]
    fast_high = store.add([new_job(queue="fast", priority=Priority.HIGH, run_at=past + 50)])[0]
    store.commit()

    in_fast = [fast_high, fast_early, fast_late, fast_low]
    assert [entry.job_id for entry in store.queued_in_order(10, "fast")] == in_fast
    assert [entry.job_id for entry in store.queued_in_order(2, "fast")] == in_fast[:2]
    # Across every queue (the dashboard's list), the same order over all of them.
    everything = [slow_high, fast_high, fast_early, fast_late, fast_low]
    assert [entry.job_id for entry in store.queued_in_order(10)] == everything
    assert [entry.job_id for entry in store.queued_in_order(3)] == everything[:3]
    assert claimed_ids(store, "fast") == in_fast
    assert claimed_ids(store, "slow") == [slow_high]
    assert store.queued_in_order(10) == []


def test_queued_jobs_are_counted_per_queue(store: Store) -> None:
    store.add([new_job(), new_job("Other", state=JobState.WAITING)])
    store.add([new_job(queue="slow")])
    store.add([new_job(queue="slow")])
    store.add([new_job(queue="fast", state=JobState.SCHEDULED, run_at=time.time() + 60)])
    store.commit()

    assert store.queued_per_queue() == {DEFAULT_QUEUE: 1, "slow": 2}
    claimed_ids(store, "slow")
    assert store.queued_per_queue() == {DEFAULT_QUEUE: 1}


def test_a_job_keeps_its_queue_through_a_retry_and_promotion(store: Store) -> None:
    """A scheduled job joins its own queue when due; a chain's links keep theirs."""
    due = store.add([new_job(queue="slow", state=JobState.SCHEDULED, run_at=time.time() - 1)])[0]
    first, link = store.add(
        [new_job(queue="slow"), new_job("Other", state=JobState.WAITING, queue="slow")]
    )
    store.commit()
    assert store.promote_due(time.time()) == [due]
    assert claimed_ids(store, DEFAULT_QUEUE) == []
    assert claimed_ids(store, "slow") == [due, first]
    released = store.release_link(link, [1], time.time())
    assert released is not None and released.queue == "slow"
    assert claimed_ids(store, "slow") == [link]


def test_listings_filter_by_queue(store: Store) -> None:
    store.add([new_job()])
    slow = store.add([new_job(queue="slow")])[0]
    store.commit()

    jobs, total = store.search(JobQuery(queue="slow"))
    assert [job.id for job in jobs] == [slow] and total == 1
    jobs, total = store.search(JobQuery(queue="slow", states=[JobState.QUEUED]))
    assert [job.id for job in jobs] == [slow] and total == 1
    assert store.search(JobQuery(queue="nowhere")) == ([], 0)


def test_a_class_limit_counts_its_running_jobs_in_every_queue(store: Store) -> None:
    """`max_concurrency` is the class's, wherever its jobs run."""
    store.add([new_job("Limited", queue="slow")])
    store.add([new_job("Limited")])
    store.commit()
    limits = {"Limited": 1}
    assert len(claimed_ids(store, "slow", limits)) == 1
    assert claimed_ids(store, DEFAULT_QUEUE, limits) == []


@pytest.mark.sqlite_only("upgrades a database of an older SQLite schema")
def test_a_schema_7_databases_jobs_join_the_default_queue(tmp_path: Path) -> None:
    path = tmp_path / "bgjobs.db"
    old = sqlite3.connect(path)
    old.executescript(older_schema(7))
    old.execute(
        "INSERT INTO jobs (id, class_name, method, params, priority, state, run_at, "
        "max_attempts, timeout, created_at) VALUES (1, 'Echo', 'handle', X'90', 1, 'queued', "
        "1.0, 3, 30, 1.0)"
    )
    old.commit()
    old.close()
    store = SQLiteStore(path)
    try:
        assert store.queued_per_queue() == {DEFAULT_QUEUE: 1}
        assert claimed_ids(store, "slow") == []
        assert claimed_ids(store, DEFAULT_QUEUE) == [1]
        store.commit()
    finally:
        store.close()
    check = sqlite3.connect(path)
    indexes = {name for (name,) in check.execute("SELECT name FROM sqlite_master")}
    assert "jobs_ready_in_queue" in indexes and "jobs_ready" not in indexes
    check.close()


def test_a_version_2_postgresql_schema_gains_queues(tmp_path: Path) -> None:
    """A schema made by bgjobs before queues (version 2: no jobs.queue, jobs_ready) is
    upgraded in place when a node opens it: its jobs are the default queue's."""
    if (why := postgres_unavailable()) is not None:
        pytest.skip(why)
    _, schema = address_of("postgresql", tmp_path)
    old = (
        SCHEMA_POSTGRES.read_text()
        .replace("'schema_version', '4'", "'schema_version', '2'")
        .replace("ALTER TABLE jobs ADD COLUMN IF NOT EXISTS queue", "-- ")
        .replace("CREATE INDEX IF NOT EXISTS jobs_ready_in_queue ON jobs (queue, ", "-- ")
        .replace("    WHERE state = 'queued' AND NOT oneshot;\n", "", 1)
    )
    old = re.sub(r",(\s+--[^\n]*)\n\s+queue TEXT[^\n]*\n", r"\1\n", old)
    old += (
        "CREATE INDEX IF NOT EXISTS jobs_ready ON jobs (priority, run_at, id) "
        "WHERE state = 'queued' AND NOT oneshot;\n"
        "INSERT INTO jobs (class_name, method, params, priority, state, run_at, "
        "max_attempts, timeout, created_at) VALUES ('Echo', 'handle', '\\x90', 1, 'queued', "
        "1.0, 3, 30, 1.0);\n"
    )
    with psycopg.connect(PG_DSN, autocommit=True) as db:
        db.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        db.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
        with db.transaction():
            db.execute(old.encode())
        assert db.execute(
            "SELECT count(*) FROM information_schema.columns "
            "WHERE table_schema = %s AND column_name = 'queue'",
            (schema,),
        ).fetchone() == (0,)
    store = open_store(("postgresql", schema))
    try:
        assert store.queued_per_queue() == {DEFAULT_QUEUE: 1}
        assert len(claimed_ids(store, DEFAULT_QUEUE)) == 1
        store.commit()
    finally:
        store.close()
    with psycopg.connect(PG_DSN, autocommit=True) as db:
        indexes = {
            str(name)
            for (name,) in db.execute(
                "SELECT indexname FROM pg_indexes WHERE schemaname = %s", (schema,)
            )
        }
        version = db.execute(
            sql.SQL("SELECT value FROM {}.meta WHERE key = 'schema_version'").format(
                sql.Identifier(schema)
            )
        ).fetchone()
    assert "jobs_ready_in_queue" in indexes and "jobs_ready" not in indexes
    assert version == (str(SCHEMA_VERSION),)
