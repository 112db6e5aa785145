"""The PostgreSQL store when its connection goes (the server restarting, the backend
terminated): the call that meets the loss raises StoreOffline and did nothing; the next
one reconnects and redoes the lost transaction's kept writes (claims, outcomes), not its
submits, which `rollbacks` reports lost."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from bgjobd.store.base import FinishedAttempt
from bgjobd.store.offline import StoreOffline
from bgjobd.store.postgres import PostgresStore
from bgjobs.model import JobState, Outcome
from tests.store.support import PG_DSN, address_of, new_job, open_store, postgres_unavailable
from tests.support.waiting import wait_for


@pytest.fixture
def store(tmp_path: Path) -> PostgresStore:
    why = postgres_unavailable()
    if why is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(why)
        pytest.skip(why)
    opened = open_store(address_of("postgresql", tmp_path))
    assert isinstance(opened, PostgresStore)
    return opened


def _terminate(store: PostgresStore) -> None:
    """What a server restart does to the store's connection."""
    pid = store._db.info.backend_pid
    with psycopg.connect(PG_DSN, autocommit=True) as db:
        db.execute("SELECT pg_terminate_backend(%s)", (pid,))


def test_a_lost_transaction_s_claims_and_outcomes_are_redone_its_submits_reported_lost(
    store: PostgresStore,
) -> None:
    try:
        first, second = store.add([new_job("A")])[0], store.add([new_job("B")])[0]
        store.commit()
        now = time.time()
        assert store.claim(first, "me", 1, now) is not None
        assert store.claim(second, "me", 2, now) is not None
        store.finish_attempt(
            first, FinishedAttempt(1, Outcome.SUCCEEDED, now, 0.1), JobState.SUCCEEDED, result=7
        )
        dropped = store.add([new_job("C")])[0]
        before = store.rollbacks
        _terminate(store)

        # The call meeting the loss did nothing; the store says it is offline.
        with pytest.raises(StoreOffline):
            store.get(first)
        assert store.offline is not None
        assert store.rollbacks == before + 1
        # The commit reconnects, redoes the kept writes and commits them.
        store.commit()
        assert store.offline is None
        done = store.get(first)
        assert done is not None and done.state is JobState.SUCCEEDED and done.result == 7
        running = store.get(second)
        assert running is not None and running.state is JobState.RUNNING
        assert store.get(dropped) is None
        # After a reconnection, `changed()` tells of news once (notices may have been missed).
        assert store.changed() is True
        assert store.changed() is False
    finally:
        store.close()


def test_a_lost_commit_s_writes_are_redone_once_connected_again(store: PostgresStore) -> None:
    try:
        job_id = store.add([new_job("A")])[0]
        store.commit()
        assert store.claim(job_id, "me", 1, time.time()) is not None
        _terminate(store)
        with pytest.raises(StoreOffline):
            store.commit()
        assert store.redo_kept_writes() == 1  # offline: kept for the next connection
        store.commit()
        claimed = store.get(job_id)
        assert claimed is not None and claimed.state is JobState.RUNNING
        assert claimed.owner == "me"
    finally:
        store.close()


def test_a_session_ended_for_idling_in_a_transaction_is_reconnected_and_redone(
    store: PostgresStore, tmp_path: Path
) -> None:
    """A node frozen inside a transaction: the server ends its session (here after 0.3 s,
    set in the DSN, which the store then leaves as it is), releasing its row locks; the
    node, woken, commits on a new connection what it had kept."""
    store.close()
    frozen = _ended_when_idle(tmp_path)
    try:
        job_id = frozen.add([new_job("A")])[0]
        frozen.commit()
        assert frozen.claim(job_id, "me", 1, time.time()) is not None
        _wait_until_ended(frozen)
        with contextlib.suppress(StoreOffline):
            frozen.commit()  # meets the loss (the commit is then tried again, as the journal does)
        frozen.commit()
        claimed = frozen.get(job_id)
        assert claimed is not None and claimed.state is JobState.RUNNING
    finally:
        frozen.close()


@pytest.mark.parametrize("opened_by", ["a claim", "an end with the next claim", "a submit"])
def test_a_session_idling_after_any_write_in_a_transaction_is_ended(
    tmp_path: Path, opened_by: str
) -> None:
    """Whatever write left the transaction open (one statement, or several sent in one
    pipeline), a node frozen then is ended by the server's idle-in-transaction timeout
    (0.3 s here): its row locks never hold the other nodes up for longer."""
    frozen = _ended_when_idle(tmp_path)
    try:
        first, _ = frozen.add([new_job("A")])[0], frozen.add([new_job("B")])[0]
        if opened_by != "a claim":
            frozen.claim(first, "me", 1, time.time())
        frozen.commit()
        if opened_by == "a claim":
            assert frozen.claim(first, "me", 1, time.time()) is not None
        elif opened_by == "a submit":
            frozen.submit_lock_wait = "50ms"
            frozen.submit([new_job("C", key="k")])
        else:
            assert frozen.claim_along_next_end("me", 1, "default", time.time())
            ended = FinishedAttempt(1, Outcome.SUCCEEDED, time.time(), 0.1, None, owner="me")
            frozen.finish_attempt(first, ended, JobState.SUCCEEDED)
            assert frozen.claimed_along() is not None
        assert frozen.in_transaction
        _wait_until_ended(frozen)
    finally:
        frozen.close()


def _ended_when_idle(tmp_path: Path) -> PostgresStore:
    """The test's store, whose session the server ends after 0.3 s idle in a transaction
    (set in the DSN, which the store then leaves as it is)."""
    _, schema = address_of("postgresql", tmp_path)
    dsn = f"{PG_DSN}?options=-c%20idle_in_transaction_session_timeout%3D300"
    return PostgresStore(dsn, schema, application_name=f"tests:{schema}")


def _wait_until_ended(frozen: PostgresStore) -> None:
    pid = frozen._db.info.backend_pid

    def session_gone() -> bool:
        with psycopg.connect(PG_DSN, autocommit=True) as db:
            row = db.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,))
            return row.fetchone() is None

    wait_for(session_gone, timeout=10, what="the server to end the idle session")


def test_a_lost_claim_another_node_made_meanwhile_is_reported_once(
    store: PostgresStore, tmp_path: Path
) -> None:
    """The transaction holding this store's claim is lost; before it reconnects, another
    node claims the job: the redone claim takes nothing, and `lost_claims()` names the job
    (its attempt here must stop), once. A claim redone successfully is not reported."""
    other = open_store(address_of("postgresql", tmp_path))
    try:
        taken, kept = store.add([new_job("A")])[0], store.add([new_job("B")])[0]
        store.commit()
        now = time.time()
        assert store.claim(taken, "me", 1, now) is not None
        assert store.claim(kept, "me", 2, now) is not None
        _terminate(store)
        assert other.claim(taken, "other", 3, now) is not None
        other.commit()

        with pytest.raises(StoreOffline):
            store.get(taken)
        store.commit()  # reconnects and redoes both claims: one finds its job taken
        assert store.lost_claims() == [taken]
        assert store.lost_claims() == []
        mine = store.get(kept)
        assert mine is not None and mine.owner == "me" and mine.state is JobState.RUNNING
        theirs = store.get(taken)
        assert theirs is not None and theirs.owner == "other"
    finally:
        other.close()
        store.close()


def test_a_server_turned_read_only_is_offline_until_a_writable_one_answers(
    own_role: str, tmp_path: Path
) -> None:
    """A failover can leave the DSN's host a standby: a write refused as read-only loses the
    connection as a restart does, and a read-only server reached again is not connected
    (no write could go through): the store stays offline until a connection reaches a
    server that takes writes. (Read-only here: the sessions of the test's own role.)"""
    _, schema = address_of("postgresql", tmp_path)
    role = sql.Identifier(own_role)
    with psycopg.connect(PG_DSN, autocommit=True) as db:
        db.execute(
            sql.SQL("CREATE SCHEMA {} AUTHORIZATION {}").format(sql.Identifier(schema), role)
        )
    store = PostgresStore(make_conninfo(PG_DSN, user=own_role), schema)
    try:
        job_id = store.add([new_job()])[0]
        store.commit()
        # Demoted under this session: its next write is refused; so are the next sessions.
        store._db.execute("SET default_transaction_read_only = on")
        with psycopg.connect(PG_DSN, autocommit=True) as db:
            db.execute(sql.SQL("ALTER ROLE {} SET default_transaction_read_only = on").format(role))
        with pytest.raises(StoreOffline):
            store.claim(job_id, "me", 1, time.time())
        wait_for(lambda: _refused_read_only(store), timeout=10, what="a read-only reconnection")

        with psycopg.connect(PG_DSN, autocommit=True) as db:
            db.execute(sql.SQL("ALTER ROLE {} RESET default_transaction_read_only").format(role))
        wait_for(lambda: _claims(store, job_id), timeout=10, what="the writable server again")
        store.commit()
        job = store.get(job_id)
        assert job is not None and job.state is JobState.RUNNING and job.attempts == 1, job
    finally:
        store.close()


def _refused_read_only(store: PostgresStore) -> bool:
    """A call that reconnected (it was time to try) to a read-only server, and so failed."""
    with contextlib.suppress(StoreOffline):
        store.get(1)
    return store.offline is not None and "read-only" in store.offline


def _claims(store: PostgresStore, job_id: int) -> bool:
    try:
        return store.claim(job_id, "me", 1, time.time()) is not None
    except StoreOffline:
        return False
