"""`bgjobctl store migrate`: a SQLite store carried into PostgreSQL, every job read back
field by field through the store contract on both sides; and what it refuses, changing
nothing. The command runs as a real process; each test has a schema of its own."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import psycopg
import pytest
import tomli_w
from psycopg.conninfo import make_conninfo

from bgjobd.store.base import AttemptOutput, JobQuery, Store, UniqueTaken
from bgjobd.store.postgres import PostgresStore
from bgjobd.store.sqlite import SQLiteStore
from bgjobs.model import ErrorInfo, JobState, Outcome, PauseKind, Priority
from bgjobs.rates import Rate
from tests.store.support import (
    PG_DSN,
    address_of,
    attempt,
    new_job,
    node,
    open_store,
    require_postgres,
)
from tests.support.workspace import DEFAULT_SETTINGS, Workspace, merged


@pytest.fixture
def schema(tmp_path: Path) -> str:
    require_postgres()
    return address_of("postgresql", tmp_path)[1]


@pytest.fixture
def pg_config(tmp_path: Path, schema: str) -> Path:
    """A configuration naming the test's PostgreSQL schema (the migration's target)."""
    path = tmp_path / "pg.toml"
    settings = merged(
        DEFAULT_SETTINGS, {"store": {"backend": "postgresql", "dsn": PG_DSN, "schema": schema}}
    )
    path.write_bytes(tomli_w.dumps(settings).encode())
    return path


def migrate(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bgjobctl", "--config", str(config), "store", "migrate", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


Opener = Callable[[], PostgresStore]


@pytest.fixture
def target(schema: str) -> Iterator[Opener]:
    """The target store as a daemon would open it (after the migration: the command makes
    the schema itself)."""
    stores: list[Store] = []

    def opened() -> PostgresStore:
        store = open_store(("postgresql", schema))
        assert isinstance(store, PostgresStore)
        stores.append(store)
        return store

    yield opened
    for store in stores:
        store.close()


def everything(store: Store) -> list[Any]:
    jobs, total = store.search(JobQuery(limit=10_000, oldest_first=True))
    assert total == len(jobs)
    return [store.get(job.id) for job in jobs]


def compare(lite: Store, pg: Store) -> None:
    """Every read of the contract gives the same on both."""
    lite_jobs, pg_jobs = everything(lite), everything(pg)
    assert [job.id for job in pg_jobs] == [job.id for job in lite_jobs]
    for before, after in zip(lite_jobs, pg_jobs, strict=True):
        assert msgspec.to_builtins(after) == msgspec.to_builtins(before), before.id
        assert pg.stored_outputs(before.id) == lite.stored_outputs(before.id)
        if before.chain_id is not None:
            assert pg.chain(before.chain_id) == lite.chain(before.chain_id)
        if before.batch_id is not None:
            assert pg.batch_members(before.batch_id) == lite.batch_members(before.batch_id)
        if before.key is not None:
            assert pg.find_by_key(before.key) == lite.find_by_key(before.key)
        if before.unique_key is not None:
            assert pg.find_live_unique(before.unique_key) == lite.find_live_unique(
                before.unique_key
            )
    assert pg.counts() == lite.counts()
    assert pg.pauses() == lite.pauses()
    assert pg.scheduled(None, 1000) == lite.scheduled(None, 1000)
    assert pg.queued() == lite.queued()
    assert pg.queued_per_queue() == lite.queued_per_queue()
    assert pg.next_due() == lite.next_due()
    assert pg.latest_key("schedule:") == lite.latest_key("schedule:")


def contents(path: Path) -> str:
    """What an SQLite database holds (its file's bytes change with a checkpoint)."""
    db = sqlite3.connect(path)
    try:
        return "\n".join(db.iterdump())
    finally:
        db.close()


def build_sqlite_store(path: Path) -> dict[str, int]:
    """A store with a job in every state and every kind of link, through the store API."""
    store = SQLiteStore(path)
    now = time.time()
    ids: dict[str, int] = {}
    try:
        # A job that failed once (an earlier attempt, with its node), then succeeded, with
        # output kept from both attempts.
        ids["retried"] = store.add([new_job("Echo", key="k-retried")])[0]
        assert store.claim(ids["retried"], "node-a", 11, now)
        store.keep_output(ids["retried"], 1, AttemptOutput(b"first\n", 6, "host-a:/s"))
        error = ErrorInfo(type="ValueError", message="bad", traceback="Traceback ...")
        store.finish_attempt(ids["retried"], attempt(1, Outcome.FAILED, error), JobState.QUEUED)
        assert store.claim(ids["retried"], "node-b", 12, now)
        store.keep_output(ids["retried"], 2, AttemptOutput(b"second\n" * 3, 99, "host-b:/s"))
        store.finish_attempt(
            ids["retried"], attempt(2, Outcome.SUCCEEDED), JobState.SUCCEEDED, result={"n": 2}
        )
        # Failed for good, then retried by a user and failed again: a second round.
        ids["failed"] = store.add([new_job("Fail", priority=Priority.HIGH)])[0]
        assert store.claim(ids["failed"], "node-a", 13, now)
        store.finish_attempt(ids["failed"], attempt(1, Outcome.FAILED, error), JobState.FAILED)
        assert store.requeue(ids["failed"], now) is not None
        assert store.claim(ids["failed"], "node-a", 14, now)
        store.finish_attempt(ids["failed"], attempt(1, Outcome.TIMED_OUT), JobState.FAILED)
        ids["cancelled"] = store.add([new_job("Echo", priority=Priority.LOW)])[0]
        store.cancel_waiting(ids["cancelled"], "no longer wanted", now)
        ids["scheduled"] = store.add(
            [new_job("Echo", state=JobState.SCHEDULED, run_at=now + 3600, key="schedule:0001")]
        )[0]
        ids["unique"] = store.add(
            [new_job("Record", unique_key="u" * 32, queue="mail", limit_key="l" * 32)]
        )[0]
        # A chain: its first link finished, the second released, the third waiting.
        chain = store.add(
            [
                new_job("Echo", chain_position=1, chain_length=3),
                new_job("Add", state=JobState.WAITING, chain_position=2, chain_length=3),
                new_job("Echo", state=JobState.WAITING, chain_position=3, chain_length=3),
            ]
        )
        ids["chain"] = chain[0]
        assert store.claim(chain[0], "node-a", 15, now)
        store.finish_attempt(chain[0], attempt(1, Outcome.SUCCEEDED), JobState.SUCCEEDED, result=3)
        assert store.release_link(chain[1], [3, 4], now)
        # A batch: its callback waits for its two members.
        batch = store.add(
            [
                new_job("Echo", state=JobState.WAITING, batch_callback=True),
                new_job("Echo", params=["m1"]),
                new_job("Echo", params=["m2"], trace={"traceparent": "00-ab-cd-01"}),
            ]
        )
        ids["batch"] = batch[0]
        # A rate-limited start, a pause, and a node long dead.
        ids["limited"] = store.add([new_job("Sleep")])[0]
        assert store.claim(ids["limited"], "node-a", 16, now, rate=Rate(5, 60.0))
        store.finish_attempt(ids["limited"], attempt(1, Outcome.SUCCEEDED), JobState.SUCCEEDED)
        store.pause(PauseKind.CLASS, "Sleep", now)
        assert store.register_node(node("gone", lease=-100)) is None
        # Pruned jobs leave ids behind: the target must never give them again.
        ids["last"] = store.add([new_job("Echo")])[0]
        store.commit()
    finally:
        store.close()
    with sqlite3.connect(path) as db:
        db.execute("DELETE FROM jobs WHERE id = ?", (ids["last"],))
    return ids


def test_a_sqlite_store_is_carried_intact(tmp_path: Path, pg_config: Path, target: Opener) -> None:
    source = tmp_path / "old" / "bgjobs.db"
    ids = build_sqlite_store(source)
    before = contents(source)
    done = migrate(pg_config, "--from", f"sqlite:{source}", "--json")
    assert done.returncode == 0, done.stderr
    report = msgspec.json.decode(done.stdout)
    assert report["jobs"] == {
        "waiting": 2,
        "scheduled": 1,
        "queued": 4,
        "succeeded": 3,
        "failed": 1,
        "cancelled": 1,
    }
    assert (report["attempts"], report["outputs"], report["pauses"], report["starts"]) == (
        2,
        2,
        1,
        1,
    )
    assert report["next_id"] == ids["last"] + 1
    assert contents(source) == before
    lite, pg = SQLiteStore(source), target()
    try:
        compare(lite, pg)
    finally:
        lite.close()
    retried = pg.get(ids["retried"])
    assert retried is not None
    assert [entry.node for entry in retried.history] == ["node-a", "node-b"]
    # The target goes on from there: new ids after the greatest ever given, the unique key
    # still held by its live job, claims, the rate's start counted.
    assert pg.add([new_job("Echo")]) == [ids["last"] + 1]
    with pytest.raises(UniqueTaken):
        pg.add([new_job("Record", unique_key="u" * 32)])
    claimed = pg.claim_next("node-c", 21, time.time(), {}, queue="mail")
    assert claimed is not None and claimed.id == ids["unique"]
    pg.add([new_job("Sleep")])
    assert pg.next_rate_slot({"Sleep": Rate(1, 60.0)}, time.time()) is not None
    pg.rollback()


def test_a_store_a_real_daemon_used(workspace: Workspace, pg_config: Path, target: Opener) -> None:
    workspace.write_config({"jobs": {"Record": {"unique": True}}})
    workspace.start_daemon()
    client = workspace.client()
    from bgjobs.model import ChainLink, JobSpec

    done_id = client.submit([JobSpec(class_name="Echo", method="handle", params=["hi"])]).ids[0]
    failed_id = client.submit([JobSpec(class_name="Fail", method="handle", params=["no"])]).ids[0]
    chain = client.submit(
        [
            JobSpec(
                class_name="Add",
                method="handle",
                params=[1, 2],
                then=[ChainLink("Add", "handle", [10])],
            )
        ]
    )
    later = client.submit(
        [JobSpec(class_name="Record", method="handle", params=["x"], delay=3600)]
    ).ids[0]
    assert client.wait(done_id, 30).state is JobState.SUCCEEDED
    assert client.wait(failed_id, 30).state is JobState.FAILED
    assert client.wait(chain.last_ids[0], 30).result == 13
    # While the daemon runs, its store is not to be carried.
    source = workspace.storage / "bgjobs.db"
    refused = migrate(pg_config, "--from", str(source))
    assert refused.returncode == 1 and "a daemon uses this store" in refused.stderr
    workspace.daemons[0].stop()
    # No --from: the configuration's own <storage>/bgjobs.db (the same file here).
    done = migrate(pg_config)
    assert done.returncode == 0, done.stderr
    assert "carried 5 job(s)" in done.stdout and "1 scheduled" in done.stdout
    lite, pg = SQLiteStore(source), target()
    try:
        compare(lite, pg)
    finally:
        lite.close()
    scheduled = pg.get(later)
    assert scheduled is not None and scheduled.unique_key is not None


def test_bad_sources_are_refused_and_nothing_changes(
    tmp_path: Path, pg_config: Path, schema: str, target: Opener
) -> None:
    missing = migrate(pg_config, "--from", str(tmp_path / "nowhere.db"))
    assert missing.returncode == 2 and "no such file" in missing.stderr
    assert not (tmp_path / "nowhere.db").exists()
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"not a database at all" * 100)
    refused = migrate(pg_config, "--from", str(garbage))
    assert refused.returncode == 2 and "not an SQLite database" in refused.stderr
    assert garbage.read_bytes() == b"not a database at all" * 100
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE t (x)")
    refused = migrate(pg_config, "--from", str(other))
    assert refused.returncode == 2 and "not a bgjobs store" in refused.stderr
    # Running jobs (their daemon was killed): to be recovered by a daemon first.
    running = tmp_path / "running" / "bgjobs.db"
    store = SQLiteStore(running)
    job_id = store.add([new_job("Echo")])[0]
    assert store.claim(job_id, "node-a", 99, time.time())
    store.commit()
    # A live node (this process) uses it.
    live = node("live", pid=os.getpid(), lease=300)
    assert store.register_node(live) is None
    store.commit()
    refused = migrate(pg_config, "--from", str(running))
    assert refused.returncode == 1 and "a daemon uses this store: live" in refused.stderr
    store.leave(live)
    store.commit()
    store.close()
    refused = migrate(pg_config, "--from", str(running))
    assert refused.returncode == 1 and "stored as running (1)" in refused.stderr
    # Nothing reached the target (its schema may exist: made empty, as a daemon makes it).
    pg = target()
    assert pg.counts()[JobState.RUNNING] == 0 and everything(pg) == []


def test_bad_targets_are_refused_and_nothing_changes(
    tmp_path: Path, pg_config: Path, schema: str, target: Opener
) -> None:
    source = tmp_path / "s" / "bgjobs.db"
    store = SQLiteStore(source)
    store.add([new_job("Echo")])
    store.commit()
    store.close()
    # A dry run counts and writes nothing.
    dry = migrate(pg_config, "--from", str(source), "--dry-run")
    assert dry.returncode == 0 and "would carry 1 job(s)" in dry.stdout
    pg = target()
    assert everything(pg) == []
    kept = pg.add([new_job("Add", params=[1, 2])])[0]
    pg.commit()
    refused = migrate(pg_config, "--from", str(source))
    assert refused.returncode == 1 and "is not empty: 1 job(s)" in refused.stderr
    assert [job.id for job in everything(pg)] == [kept]
    # A DSN libpq cannot read; a server that does not answer; a SQLite configuration.
    for dsn, code, said in [
        ("host=127.0.0.1 port=5432 dbname", 2, "not a valid connection string"),
        ("postgresql://postgres@127.0.0.1:1/test?connect_timeout=2", 1, "cannot reach"),
    ]:
        bad = tmp_path / "bad.toml"
        settings = merged(
            DEFAULT_SETTINGS, {"store": {"backend": "postgresql", "dsn": dsn, "schema": schema}}
        )
        bad.write_bytes(tomli_w.dumps(settings).encode())
        refused = migrate(bad, "--from", str(source))
        assert refused.returncode == code and said in refused.stderr, refused.stderr
    lite = tmp_path / "lite.toml"
    lite.write_bytes(tomli_w.dumps(DEFAULT_SETTINGS).encode())
    refused = migrate(lite, "--from", str(source))
    assert refused.returncode == 2 and 'backend = "postgresql"' in refused.stderr
    assert [job.id for job in everything(pg)] == [kept]


def test_a_role_that_may_not_make_the_schema_is_told_what_it_needs(
    tmp_path: Path, schema: str, own_role: str
) -> None:
    """Not "not a valid connection string" (a refusal is a ProgrammingError too): what the
    role lacks, exit 1, nothing made."""
    source = tmp_path / "s" / "bgjobs.db"
    store = SQLiteStore(source)
    store.add([new_job("Echo")])
    store.commit()
    store.close()
    config = tmp_path / "role.toml"
    dsn = make_conninfo(PG_DSN, user=own_role)
    settings = merged(
        DEFAULT_SETTINGS, {"store": {"backend": "postgresql", "dsn": dsn, "schema": schema}}
    )
    config.write_bytes(tomli_w.dumps(settings).encode())
    refused = migrate(config, "--from", str(source))
    assert refused.returncode == 1, refused.stderr
    assert "cannot be made or opened: permission denied" in refused.stderr
    assert "AUTHORIZATION" in refused.stderr
    with psycopg.connect(PG_DSN, autocommit=True) as db:
        made = db.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone()
    assert made is None
