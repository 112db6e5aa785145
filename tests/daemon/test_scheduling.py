"""Delays, times and priorities."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bgjobs.model import JobSpec, JobState, Priority
from tests.support.waiting import wait_for
from tests.support.workspace import Workspace


def _starts(path: Path) -> list[str]:
    return [line.split()[1] for line in path.read_text().splitlines() if line.startswith("start")]


def test_a_delayed_job_starts_on_time(workspace: Workspace) -> None:
    workspace.start_daemon()
    client = workspace.client()
    record = workspace.root / "record"
    submitted = time.time()
    job_id = client.submit(
        [JobSpec(class_name="Record", method="handle", params=[str(record), "late"], delay=1.0)]
    ).ids[0]
    assert client.get(job_id).state is JobState.SCHEDULED
    job = client.wait(job_id, 10)
    started = float(record.read_text().split()[2])
    assert job.state is JobState.SUCCEEDED
    assert started >= submitted + 1.0
    assert started - (submitted + 1.0) < 0.5  # generous: shared machines are noisy


def test_at_a_given_time_through_bgjobctl(workspace: Workspace) -> None:
    workspace.start_daemon()
    at = (datetime.now(UTC) + timedelta(seconds=0.8)).isoformat()
    done = workspace.bgjobctl("submit", "Echo", "handle", "x", "--at", at, "--wait")
    assert done.returncode == 0, done.stderr
    job = workspace.client().get(1)
    assert job.started_at is not None and job.started_at >= datetime.fromisoformat(at)


def test_priority_order_with_one_busy_worker(workspace: Workspace) -> None:
    workspace.write_config({"daemon": {"workers": 1}, "job_priority": {"Record": "low"}})
    workspace.start_daemon()
    client = workspace.client()
    record = workspace.root / "record"
    blocker = workspace.root / "blocker"
    client.submit([JobSpec(class_name="Sleep", method="handle", params=[0.5, str(blocker)])])
    wait_for(blocker.exists, what="the worker to be busy")
    order = [
        ("low-1", None),
        ("high-1", Priority.HIGH),
        ("medium-1", Priority.MEDIUM),
        ("low-2", None),
        ("high-2", Priority.HIGH),
    ]
    ids = [
        client.submit(
            [
                JobSpec(
                    class_name="Record",
                    method="handle",
                    params=[str(record), name],
                    priority=priority,
                )
            ]
        ).ids[0]
        for name, priority in order
    ]
    for job_id in ids:
        client.wait(job_id, 20)
    assert _starts(record) == ["high-1", "high-2", "medium-1", "low-1", "low-2"]
    assert client.get(ids[0]).priority is Priority.LOW  # from job_priority


def test_delayed_jobs_keep_their_order_across_a_restart(workspace: Workspace) -> None:
    daemon = workspace.start_daemon()
    client = workspace.client()
    record = workspace.root / "record"
    ids = [
        client.submit(
            [
                JobSpec(
                    class_name="Record",
                    method="handle",
                    params=[str(record), str(n)],
                    delay=1.5 - n * 0.2,
                )
            ]
        ).ids[0]
        for n in range(3)
    ]
    client.close()
    assert daemon.stop() == 0
    workspace.start_daemon()
    client = workspace.client()
    for job_id in ids:
        assert client.wait(job_id, 20).state is JobState.SUCCEEDED
    assert _starts(record) == ["2", "1", "0"]
