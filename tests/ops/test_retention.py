"""Retention: old finished jobs, their attempts and output files go; live work stays."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
from dataclasses import replace
from pathlib import Path

import pytest

from bgjobctl.library import make_spec
from bgjobd.journal import Journal
from bgjobd.retention import Retention
from bgjobd.store.base import NewJob, PruneRules
from bgjobd.store.sqlite import SQLiteStore
from bgjobs.config import Config, parse_settings
from bgjobs.durations import format_duration, parse_duration
from bgjobs.errors import ConfigError
from bgjobs.model import JobState, Priority
from bgjobs.rates import LONGEST_WINDOW, Rate
from tests.support.waiting import wait_for
from tests.support.workspace import Workspace


def test_durations() -> None:
    assert parse_duration("90s") == 90
    assert parse_duration("12h") == 12 * 3600
    assert parse_duration("7d") == 7 * 86400
    assert parse_duration(30) == 30
    assert format_duration(7 * 86400) == "1w"
    for bad in ("7 days", "-1s", "", "1y"):
        with pytest.raises(ValueError, match="duration"):
            parse_duration(bad)


def test_retention_defaults_and_errors() -> None:
    retention = parse_settings("").retention
    assert (retention.succeeded, retention.failed, retention.cancelled) == ("7d", "30d", "7d")
    with pytest.raises(ConfigError, match=r"retention\.failed"):
        parse_settings('[retention]\nfailed = "a month"')
    with pytest.raises(ConfigError, match=r"retention\.max_finished_jobs"):
        parse_settings("[retention]\nmax_finished_jobs = 0")


def test_max_finished_jobs_keeps_the_newest(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "bgjobs.db")
    try:
        for n in range(10):
            (job_id,) = store.add([_queued(n)])
            store.claim(job_id, "test", None, float(n))
            store._write(  # finish it at a chosen time
                "UPDATE jobs SET state = 'succeeded', finished_at = ? WHERE id = ?",
                (1000.0 + n, job_id),
            )
        store.commit()
        rules = PruneRules(finished_before={}, max_finished=4)
        assert [job.job_id for job in store.prune(rules, 100, dry_run=True)] == list(range(1, 7))
        assert len(store.prune(rules, 2)) == 2  # a batch is at most the limit
        store.commit()
        assert len(store.prune(rules, 100)) == 4
        store.commit()
        assert store.counts()[JobState.SUCCEEDED] == 4
        assert store.prune(rules, 100) == []
    finally:
        store.close()


def _queued(n: int) -> NewJob:
    return NewJob(
        class_name="Echo",
        method="handle",
        params=[n],
        priority=Priority.MEDIUM,
        state=JobState.QUEUED,
        run_at=0.0,
        max_attempts=1,
        timeout=10.0,
        created_at=0.0,
    )


def test_prune_removes_old_finished_jobs_and_their_output_only(workspace: Workspace) -> None:
    workspace.write_config(
        {
            "retry_attempts": 1,
            "retry_delay_seconds": 0,
            "retention": {"succeeded": "1s", "failed": "1s", "cancelled": "1s"},
        }
    )
    workspace.start_daemon()
    client = workspace.client()
    printed = client.submit([make_spec("Printer", "handle", ["hello"])]).ids[0]
    failed = client.submit([make_spec("Fail", "handle", ["no"])]).ids[0]
    cancelled = client.submit([make_spec("Echo", "handle", [1], 600)]).ids[0]
    client.cancel(cancelled)
    scheduled = client.submit([make_spec("Echo", "handle", [2], 600)]).ids[0]
    chain = client.submit([make_spec("Add", "handle", [20, 10], then=[("Sleep", "handle", [])])])
    head, tail = chain.ids[0], chain.last_ids[0]
    for job_id in (printed, failed, head):
        client.wait(job_id, timeout=30)
    wait_for(lambda: client.get(tail).state is JobState.RUNNING, what="the chain's last link")
    output = workspace.storage / "logs" / "jobs" / f"{printed}.log"
    assert output.exists()
    # Its output's tail, kept in the store; read through another connection, so waited
    # for: the outcome commits a moment after the daemon answers `wait` (its lazy commit).
    wait_for(lambda: _stored_outputs(workspace, printed) == 1, what="the stored output")
    time.sleep(1.1)  # past the 1 s retention (a duration, not a wait for an outcome)

    dry = workspace.bgjobctl("--json", "prune", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    would = json.loads(dry.stdout)
    assert would["jobs"] == {"succeeded": 1, "failed": 1, "cancelled": 1}
    assert would["attempts"] == 1  # the failed job's first attempt
    assert output.exists() and client.get(printed).state is JobState.SUCCEEDED

    done = workspace.bgjobctl("prune")
    assert done.returncode == 0, done.stderr
    assert "removed 3 job(s)" in done.stdout
    assert not output.exists()
    assert _stored_outputs(workspace, printed) == 0  # gone with its job (ON DELETE CASCADE)
    for gone in (printed, failed, cancelled):
        assert client.list_jobs(search=str(gone)).total == 0
    # What is not final, and the finished head of a chain still running, stay.
    assert client.get(scheduled).state is JobState.SCHEDULED
    assert client.get(head).state is JobState.SUCCEEDED
    assert client.get(tail).state is JobState.RUNNING
    assert client.stats().counts["failed"] == 0
    client.cancel(tail)


def _stored_outputs(workspace: Workspace, job_id: int) -> int:
    with contextlib.closing(sqlite3.connect(workspace.storage / "bgjobs.db")) as db:
        (count,) = db.execute("SELECT count(*) FROM outputs WHERE job_id = ?", (job_id,)).fetchone()
        return int(count)


def test_a_schedules_latest_job_is_kept(tmp_path: Path) -> None:
    """Its key is how a schedule knows its last run (for `missed` after a restart)."""
    store = SQLiteStore(tmp_path / "bgjobs.db")
    try:
        keys = ["schedule:s:2026-01-01T00:00:00Z", "schedule:s:2026-01-01T00:01:00Z"]
        for n, key in enumerate(keys):
            (job_id,) = store.add([replace(_queued(n), key=key)])
            store._write(  # finish it at a chosen time
                "UPDATE jobs SET state = 'succeeded', finished_at = 1 WHERE id = ?", (job_id,)
            )
        store.commit()
        latest = store.latest_key("schedule:s:")
        assert latest == keys[1]
        rules = PruneRules(
            finished_before={JobState.SUCCEEDED: 100.0}, keep_keys=frozenset({latest})
        )
        assert [job.job_id for job in store.prune(rules, 100)] == [1]
        store.commit()
        assert store.latest_key("schedule:s:") == keys[1]
    finally:
        store.close()


def test_a_chain_goes_whole_or_not_at_all(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "bgjobs.db")
    try:
        links = [replace(_queued(n), chain_position=n + 1, chain_length=3) for n in range(3)]
        ids = store.add(links)
        for n, job_id in enumerate(ids):
            store._write(  # finish each link at a chosen time
                "UPDATE jobs SET state = 'succeeded', finished_at = ? WHERE id = ?",
                (10.0 * (n + 1), job_id),
            )
        store.commit()
        young = PruneRules(finished_before={JobState.SUCCEEDED: 25.0})
        assert store.prune(young, 100) == []  # its last link is too new
        old = PruneRules(finished_before={JobState.SUCCEEDED: 35.0})
        assert sorted(job.job_id for job in store.prune(old, 1)) == ids  # past the limit
        store.commit()
        assert store.chain(ids[0]) == []
    finally:
        store.close()


def test_a_batch_goes_whole_or_not_at_all(tmp_path: Path) -> None:
    """Finished members stay while their batch's callback waits for their results."""
    store = SQLiteStore(tmp_path / "bgjobs.db")
    try:
        callback = replace(_queued(0), state=JobState.WAITING, batch_callback=True)
        ids = store.add([callback, _queued(1), _queued(2)])
        for member in ids[1:]:
            store._write(
                "UPDATE jobs SET state = 'succeeded', finished_at = 10.0 WHERE id = ?", (member,)
            )
        store.commit()
        old = PruneRules(finished_before={JobState.SUCCEEDED: 35.0})
        assert store.prune(old, 100) == []  # the callback still waits
        store._write(
            "UPDATE jobs SET state = 'succeeded', finished_at = 20.0 WHERE id = ?", (ids[0],)
        )
        store.commit()
        assert sorted(job.job_id for job in store.prune(old, 1)) == ids
        store.commit()
        assert store.get(ids[1]) is None
    finally:
        store.close()


def test_a_prune_pass_forgets_starts_no_claim_counts(tmp_path: Path) -> None:
    """Rate limits' counted starts go with retention's pass: a customer's (a `limit_by`
    key) that never starts again, and a class's whose rate was removed, once out of the
    longest window; a dry run leaves them."""
    config = Config(
        parse_settings(
            'allowed_jobs = {Paced = ["handle"], Was = ["handle"]}\n'
            '[jobs.Paced]\nrate_limit = "100/s"\nlimit_by = 0\n'
        ),
        None,
    )
    store = SQLiteStore(tmp_path / "bgjobs.db")
    t = time.time()
    for name, customer in (("Paced", "17"), ("Paced", "42"), ("Was", "")):
        (job_id,) = store.add([replace(_queued(0), class_name=name, limit_key=customer)])
        assert store.claim(job_id, "n", None, t, rate=Rate(100, 1.0)) is not None
    store.commit()

    async def prune_at(now: float, *, dry_run: bool = False) -> list[str]:
        journal = Journal(store, on_error=lambda message: None)
        retention = Retention(
            config,
            store,
            journal,
            keep_keys=frozenset,
            now=lambda: now,
            say=lambda message: None,
        )
        await retention.prune(dry_run=dry_run)
        rows = store._db.execute("SELECT class_name FROM starts ORDER BY class_name")
        return [str(name) for (name,) in rows]

    try:
        assert asyncio.run(prune_at(t + 0.5)) == ["Paced", "Paced", "Was"]
        assert asyncio.run(prune_at(t + 120, dry_run=True)) == ["Paced", "Paced", "Was"]
        assert asyncio.run(prune_at(t + 120)) == ["Was"]  # out of Paced's 1 s window
        assert asyncio.run(prune_at(t + LONGEST_WINDOW + 120)) == []
    finally:
        store.close()
