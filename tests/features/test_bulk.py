"""Bulk actions through `bgjobctl`, against a real daemon: cancel or retry every job that
matches a filter, after a count and a confirmation (`--yes` off a terminal)."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path

from bgjobctl.client import Client
from bgjobs.model import JobSpec, JobState
from tests.support.waiting import wait_for
from tests.support.workspace import Workspace


def later(client: Client, class_name: str, *params: object) -> int:
    """A job scheduled an hour ahead: it waits for the whole test."""
    spec = JobSpec(class_name=class_name, method="handle", params=list(params), delay=3600)
    return client.submit([spec]).ids[0]


def states(client: Client, ids: list[int]) -> list[JobState]:
    return [client.get(job_id).state for job_id in ids]


def test_bulk_cancel_by_class_cancels_exactly_the_matching_jobs(workspace: Workspace) -> None:
    workspace.start_daemon()
    client = workspace.client()
    marker = workspace.root / "started"
    running = client.submit(
        [JobSpec(class_name="Sleep", method="handle", params=[30, str(marker)])]
    ).ids[0]
    wait_for(marker.exists, timeout=10, what="the Sleep job to start")
    waiting = [later(client, "Sleep", 1) for _ in range(3)]
    others = [later(client, "Echo", "keep") for _ in range(2)]

    asked = workspace.bgjobctl("cancel", "--class", "Sleep")  # no terminal, no --yes
    assert asked.returncode == 2
    assert "cancel 4 matching job(s)" in asked.stderr and "--yes" in asked.stderr
    assert states(client, waiting) == [JobState.SCHEDULED] * 3

    done = workspace.bgjobctl("cancel", "--class", "Sleep", "--yes")
    assert done.returncode == 0, done.stderr
    assert "cancelled 4 job(s)" in done.stdout
    assert states(client, [running, *waiting]) == [JobState.CANCELLED] * 4
    assert states(client, others) == [JobState.SCHEDULED] * 2


def test_bulk_cancel_by_state_and_search(workspace: Workspace) -> None:
    workspace.start_daemon()
    client = workspace.client()
    red = [later(client, "Echo", "red") for _ in range(2)]
    blue = later(client, "Echo", "blue")
    answer = workspace.bgjobctl(
        "--json", "cancel", "--state", "scheduled", "--search", "red", "--yes"
    )
    assert answer.returncode == 0, answer.stderr
    assert json.loads(answer.stdout) == {"cancelled": 2, "skipped": 0}
    assert states(client, [*red, blue]) == [JobState.CANCELLED] * 2 + [JobState.SCHEDULED]
    nothing = workspace.bgjobctl("cancel", "--search", "green")
    assert nothing.returncode == 0 and "no job matches" in nothing.stdout


def test_bulk_retry_by_class(workspace: Workspace, tmp_path: Path) -> None:
    workspace.start_daemon()
    client = workspace.client()
    failed = client.submit([JobSpec(class_name="Fail", method="handle") for _ in range(3)]).ids
    echo = client.submit([JobSpec(class_name="Echo", method="handle", params=[1])]).ids[0]
    for job_id in [*failed, echo]:
        client.wait(job_id, 10)
    done = workspace.bgjobctl("retry", "--class", "Fail", "--yes")
    assert done.returncode == 0, done.stderr
    assert "retried 3 job(s)" in done.stdout
    for job_id in failed:
        job = client.wait(job_id, 10)
        assert job.state is JobState.FAILED and len(job.history) == 2  # a second round
    assert len(client.get(echo).history) == 1


def test_bad_bulk_requests_change_nothing(workspace: Workspace) -> None:
    workspace.start_daemon()
    client = workspace.client()
    kept = later(client, "Echo", "x")
    unknown = workspace.bgjobctl("cancel", "--class", "NoSuchJob", "--yes")
    assert unknown.returncode == 2 and "unknown class 'NoSuchJob'" in unknown.stderr
    assert workspace.bgjobctl("cancel", "--state", "succeeded", "--yes").returncode == 2
    assert workspace.bgjobctl("retry", "--state", "queued", "--yes").returncode == 2
    assert workspace.bgjobctl("cancel").returncode == 2
    assert workspace.bgjobctl("cancel", "1", "--class", "Echo").returncode == 2
    assert workspace.bgjobctl("retry", "--all-failed", "--search", "x").returncode == 2
    assert client.get(kept).state is JobState.SCHEDULED


def _answered(workspace: Workspace, answer: str, *args: str) -> subprocess.CompletedProcess[str]:
    """bgjobctl with a terminal as its stdin, to which `answer` is typed."""
    primary, secondary = pty.openpty()
    try:
        os.write(primary, answer.encode() + b"\n")
        return subprocess.run(
            [sys.executable, "-m", "bgjobctl", *args],
            check=False,
            cwd=workspace.root,
            env=workspace.env,
            stdin=secondary,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        os.close(primary)
        os.close(secondary)


def test_on_a_terminal_bulk_cancel_asks_first(workspace: Workspace) -> None:
    workspace.start_daemon()
    client = workspace.client()
    ids = [later(client, "Echo", "x") for _ in range(2)]
    declined = _answered(workspace, "n", "cancel", "--class", "Echo")
    assert declined.returncode == 1, declined.stderr
    assert "cancel 2 matching job(s)" in declined.stderr and "nothing cancelled" in declined.stderr
    assert states(client, ids) == [JobState.SCHEDULED] * 2
    agreed = _answered(workspace, "y", "cancel", "--class", "Echo")
    assert agreed.returncode == 0, agreed.stderr
    assert "cancelled 2 job(s)" in agreed.stdout
    assert states(client, ids) == [JobState.CANCELLED] * 2
