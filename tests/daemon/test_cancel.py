"""cancel: a waiting job never runs; a running one is killed with its process group."""

from __future__ import annotations

from bgjobs.model import JobSpec, JobState
from tests.support.procs import is_gone
from tests.support.waiting import wait_for
from tests.support.workspace import Workspace


def test_cancel_a_scheduled_job(workspace: Workspace) -> None:
    workspace.start_daemon()
    marker = workspace.root / "ran"
    client = workspace.client()
    job_id = client.submit(
        [JobSpec(class_name="Sleep", method="handle", params=[0, str(marker)], delay=1.0)]
    ).ids[0]
    done = workspace.bgjobctl("cancel", str(job_id))
    assert done.returncode == 0 and f"job {job_id} cancelled" in done.stdout
    # Wait past the due time, by running a later job to completion.
    later = client.submit([JobSpec(class_name="Echo", method="handle", delay=1.2)]).ids[0]
    assert client.wait(later, 10).state is JobState.SUCCEEDED
    assert not marker.exists()
    assert client.get(job_id).state is JobState.CANCELLED


def test_cancel_a_queued_job(workspace: Workspace) -> None:
    workspace.write_config({"daemon": {"workers": 1}})
    workspace.start_daemon()
    client = workspace.client()
    blocker = workspace.root / "blocker"
    busy = client.submit(
        [JobSpec(class_name="Sleep", method="handle", params=[30, str(blocker)])]
    ).ids[0]
    wait_for(blocker.exists, what="the blocker to run")
    queued = client.submit([JobSpec(class_name="Echo", method="handle")]).ids[0]
    assert client.get(queued).state is JobState.QUEUED
    assert client.cancel(queued).state is JobState.CANCELLED
    client.cancel(busy)
    assert client.get(queued).attempts == 0


def test_cancel_a_running_job_kills_its_process_group(workspace: Workspace) -> None:
    workspace.start_daemon()
    client = workspace.client()
    pids = workspace.root / "pids"
    job_id = client.submit(
        [JobSpec(class_name="SpawnGrandchild", method="handle", params=[str(pids), 60])]
    ).ids[0]
    wait_for(pids.exists, what="the job to start its grandchild")
    wait_for(lambda: len(pids.read_text().split()) == 2)
    worker, grandchild = (int(pid) for pid in pids.read_text().split())
    assert workspace.lock_files()
    job = client.cancel(job_id)
    assert job.state is JobState.CANCELLED and job.reason == "cancelled by request"
    assert is_gone(worker) and is_gone(grandchild)
    assert workspace.lock_files() == []
    assert job.history[-1].outcome is not None
    assert job.history[-1].outcome.value == "cancelled"
    # The pool replaced the killed worker and keeps serving.
    assert (
        client.wait(client.submit([JobSpec(class_name="Echo", method="handle")]).ids[0], 10).state
        is JobState.SUCCEEDED
    )


def test_deleting_the_lock_file_cancels_within_a_second(workspace: Workspace) -> None:
    workspace.start_daemon()
    client = workspace.client()
    marker = workspace.root / "started"
    job_id = client.submit(
        [JobSpec(class_name="Sleep", method="handle", params=[60, str(marker)])]
    ).ids[0]
    lock = wait_for(workspace.lock_files, what="the lock file")[0]
    worker = int(wait_for(lambda: marker.exists() and marker.read_text()))
    lock.unlink()
    job = client.wait(job_id, timeout=3)
    assert job.state is JobState.CANCELLED and job.reason == "lock file removed"
    assert is_gone(worker)


def test_cancel_errors(workspace: Workspace) -> None:
    workspace.start_daemon()
    workspace.bgjobctl("submit", "Echo", "handle", "--wait")
    finished = workspace.bgjobctl("cancel", "1")
    assert finished.returncode == 1 and "already succeeded" in finished.stderr
    missing = workspace.bgjobctl("cancel", "99")
    assert missing.returncode == 1 and "no job 99" in missing.stderr
