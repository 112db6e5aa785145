"""Named queues on a real daemon: each queue's own workers, so long jobs in one never hold
up another's; a submit's queue over its class's; an unknown queue refused, nothing stored;
per-queue figures in `stats`; a reload that changes `[queues]` waits for a restart."""

from __future__ import annotations

import json
import signal

import pytest

from bgjobctl.client import Client
from bgjobctl.library import close_clients, run_background_job
from bgjobs.errors import BadParams
from bgjobs.model import JobSpec, JobState
from tests.support.waiting import wait_for
from tests.support.workspace import Workspace

QUEUES = {
    "daemon": {"workers": 1},
    "queues": {"slow": {"workers": 2}, "fast": {"workers": 1}},
    "jobs": {"Sleep": {"queue": "slow"}},
}
LONG = 60.0
"""Seconds a slow job would sleep: far longer than the test, which cancels them."""


def _states(client: Client, ids: list[int]) -> list[JobState]:
    return [client.get(job_id).state for job_id in ids]


def test_long_jobs_in_one_queue_do_not_hold_up_another_queue(workspace: Workspace) -> None:
    workspace.write_config(QUEUES)
    workspace.start_daemon()
    client = workspace.client()
    slow = client.submit(
        [JobSpec(class_name="Sleep", method="handle", params=[LONG]) for _ in range(3)]
    ).ids
    wait_for(
        lambda: sorted(_states(client, slow)).count(JobState.RUNNING) == 2,
        what="both slow workers busy",
    )
    fast = client.submit([JobSpec(class_name="Echo", method="handle", params=["f"], queue="fast")])
    default = client.submit([JobSpec(class_name="Echo", method="handle", params=["d"])])

    assert client.wait(fast.ids[0], 20).state is JobState.SUCCEEDED
    assert client.wait(default.ids[0], 20).state is JobState.SUCCEEDED
    # They ran beside the slow queue's jobs, which still hold its two workers: the third
    # waits for one of them, not for the idle workers of the other queues.
    assert sorted(_states(client, slow)) == [JobState.QUEUED, JobState.RUNNING, JobState.RUNNING]
    assert client.get(fast.ids[0]).queue == "fast"
    assert client.get(slow[0]).queue == "slow"
    queues = {queue.name: queue for queue in client.stats().queues}
    assert (queues["slow"].workers, queues["slow"].busy, queues["slow"].queued) == (2, 2, 1)
    assert (queues["fast"].workers, queues["fast"].busy) == (1, 0)
    assert queues["default"].workers == 1
    for job_id in slow:
        client.cancel(job_id)


def test_a_queue_pause_and_a_bulk_cancel_by_queue(workspace: Workspace) -> None:
    """A paused queue's job stays queued while a later job of the same class in another
    queue runs; resumed, it runs. `cancel --queue` cancels that queue's jobs only."""
    workspace.write_config(QUEUES)
    workspace.start_daemon()
    client = workspace.client()
    assert workspace.bgjobctl("pause", "--queue", "fast").returncode == 0
    held = client.submit([JobSpec(class_name="Echo", method="handle", params=["h"], queue="fast")])
    free = client.submit([JobSpec(class_name="Echo", method="handle", params=["f"])])
    assert client.wait(free.ids[0], 20).state is JobState.SUCCEEDED
    assert client.get(held.ids[0]).state is JobState.QUEUED
    assert workspace.bgjobctl("resume", "--queue", "fast").returncode == 0
    assert client.wait(held.ids[0], 20).state is JobState.SUCCEEDED

    def later(queue: str | None) -> int:
        spec = JobSpec(class_name="Echo", method="handle", params=["x"], delay=3600, queue=queue)
        return client.submit([spec]).ids[0]

    fast = [later("fast") for _ in range(2)]
    others = [later(None), later("slow")]
    done = workspace.bgjobctl("cancel", "--queue", "fast", "--yes")
    assert done.returncode == 0, done.stderr
    assert "cancelled 2 job(s)" in done.stdout
    assert _states(client, fast) == [JobState.CANCELLED] * 2
    assert _states(client, others) == [JobState.SCHEDULED] * 2


def test_a_submits_queue_overrides_its_classs(workspace: Workspace) -> None:
    workspace.write_config(QUEUES)
    workspace.start_daemon()
    done = workspace.bgjobctl(
        "--json", "submit", "Sleep", "handle", "0", "--queue", "fast", "--wait"
    )
    assert done.returncode == 0, done.stderr
    job = json.loads(done.stdout)
    assert job["queue"] == "fast" and job["state"] == "succeeded"
    by_class = workspace.bgjobctl("--json", "submit", "Sleep", "handle", "0", "--wait")
    assert json.loads(by_class.stdout)["queue"] == "slow"

    listed = workspace.bgjobctl("--json", "list", "--queue", "fast")
    assert [found["id"] for found in json.loads(listed.stdout)["jobs"]] == [job["id"]]
    try:
        handle = run_background_job(
            "Echo", "handle", ["x"], queue="fast", config=str(workspace.config_path)
        )
        assert handle.id is not None
        assert workspace.client().wait(handle.id, 20).queue == "fast"
    finally:
        close_clients()


def test_an_unknown_queue_is_refused_and_nothing_is_stored(workspace: Workspace) -> None:
    workspace.write_config(QUEUES)
    workspace.start_daemon()
    refused = workspace.bgjobctl("submit", "Echo", "handle", "x", "--queue", "nowhere")
    assert refused.returncode == 2
    assert "unknown queue 'nowhere'" in refused.stderr
    assert "default, fast, slow" in refused.stderr
    client = workspace.client()
    with pytest.raises(BadParams, match="unknown queue"):
        client.submit([JobSpec(class_name="Echo", method="handle", queue="nowhere")])
    assert client.list_jobs().total == 0


def test_stats_show_each_queue(workspace: Workspace) -> None:
    workspace.write_config(QUEUES)
    workspace.start_daemon()
    shown = workspace.bgjobctl("stats")
    assert shown.returncode == 0, shown.stderr
    rows = {line.split()[0]: line.split()[1:] for line in shown.stdout.splitlines() if line}
    assert rows["default"][:2] == ["1", "0"]
    assert rows["slow"][:2] == ["2", "0"]
    assert rows["fast"][:2] == ["1", "0"]


def test_a_reload_that_changes_the_queues_waits_for_a_restart(workspace: Workspace) -> None:
    workspace.write_config(QUEUES)
    daemon = workspace.start_daemon()
    workspace.write_config({"queues": {"fast": {"workers": 3}}})
    daemon.signal(signal.SIGHUP)
    wait_for(
        lambda: "queues changed; they apply after a restart" in workspace.error_log(),
        what="the restart-only warning",
    )
    queues = {queue.name: queue.workers for queue in workspace.client().stats().queues}
    assert queues == {"default": 1, "fast": 1, "slow": 2}
