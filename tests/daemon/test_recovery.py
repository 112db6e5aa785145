"""An acknowledged job is never lost: SIGKILL the daemon, restart it, every job runs."""

from __future__ import annotations

import time

from bgjobd.store.base import NewJob
from bgjobd.store.sqlite import SQLiteStore
from bgjobs.config import load_config
from bgjobs.model import JobSpec, JobState, Outcome, Priority
from tests.support.procs import is_gone
from tests.support.waiting import wait_for
from tests.support.workspace import Workspace


def test_sigkill_with_hundreds_pending_then_restart_runs_them_all(workspace: Workspace) -> None:
    workspace.write_config({"retry_attempts": 1, "retry_delay_seconds": 0})
    daemon = workspace.start_daemon()
    client = workspace.client()
    record = workspace.root / "record"
    pids = workspace.root / "running"
    # One job is mid-attempt at the crash, the rest are waiting behind it or scheduled.
    running = client.submit(
        [JobSpec(class_name="Sleep", method="handle", params=[30, str(pids)])]
    ).ids[0]
    wait_for(pids.exists, what="the long job to start")
    worker = int(wait_for(pids.read_text))
    specs = [
        JobSpec(class_name="Record", method="handle", params=[str(record), str(n), 0.01])
        for n in range(300)
    ]
    specs += [
        JobSpec(class_name="Record", method="handle", params=[str(record), f"late-{n}"], delay=0.5)
        for n in range(50)
    ]
    acknowledged = client.submit(specs).ids
    assert len(acknowledged) == 350
    client.close()
    daemon.kill()
    wait_for(lambda: is_gone(worker), what="the orphaned worker to take its job down")

    workspace.start_daemon()
    client = workspace.client()
    for job_id in acknowledged:
        assert client.wait(job_id, 60).state is JobState.SUCCEEDED
    ran = {line.split()[1] for line in record.read_text().splitlines() if line.startswith("end")}
    assert ran >= {str(n) for n in range(300)} | {f"late-{n}" for n in range(50)}
    interrupted = client.get(running)
    assert interrupted.history[0].outcome is Outcome.INTERRUPTED
    assert interrupted.state in (JobState.RUNNING, JobState.SUCCEEDED, JobState.QUEUED)
    assert "job(s) that were running when bgjobd stopped" in workspace.daemons[-1].stderr
    assert "interrupted: Interrupted" in workspace.error_log()
    client.cancel(running)


def test_an_interrupted_job_without_retries_fails_and_says_so(workspace: Workspace) -> None:
    daemon = workspace.start_daemon()
    client = workspace.client()
    marker = workspace.root / "started"
    job_id = client.submit(
        [JobSpec(class_name="Sleep", method="handle", params=[30, str(marker)])]
    ).ids[0]
    wait_for(marker.exists)
    client.close()
    daemon.kill()
    workspace.start_daemon()
    job = workspace.client().get(job_id)
    assert job.state is JobState.FAILED
    assert job.error is not None and job.error.type == "Interrupted"
    assert workspace.lock_files() == []


def test_a_job_stored_as_running_that_never_began_gets_its_attempt_back(
    workspace: Workspace,
) -> None:
    """The fast path stores a job as running just before handing it to a worker. A crash
    in between leaves a running job with no lock file: after a restart it runs, and the
    attempt that never began does not count, even with no retries."""
    workspace.write_config({})
    workspace.storage.mkdir(parents=True, exist_ok=True)
    store = SQLiteStore(workspace.storage / "bgjobs.db")
    now = time.time()
    job_id = store.add(
        [
            NewJob(
                class_name="Echo",
                method="handle",
                params=["hello"],
                priority=Priority.MEDIUM,
                state=JobState.RUNNING,
                run_at=now,
                max_attempts=1,
                timeout=30,
                created_at=now,
                owner=load_config(workspace.config_path).node_name,
                started_at=now,
                worker_pid=999_999,
            )
        ]
    )[0]
    store.commit()
    store.close()
    workspace.start_daemon()
    job = workspace.client().wait(job_id, 30)
    assert job.state is JobState.SUCCEEDED and job.result == ["hello"]
    assert [(a.number, a.outcome) for a in job.history] == [
        (1, Outcome.INTERRUPTED),
        (1, Outcome.SUCCEEDED),
    ]
    assert "queued again" in workspace.error_log()


def test_sigkill_amid_one_at_a_time_submits_loses_nothing(workspace: Workspace) -> None:
    """Jobs submitted one call at a time mostly take the fast path (stored as running,
    handed straight to an idle worker). SIGKILL the daemon amid them, with no retries:
    after a restart every acknowledged job has ended, and succeeded unless its attempt was
    under way at the kill (at most one per worker, failed as Interrupted)."""
    workspace.write_config({"daemon": {"workers": 2}})
    daemon = workspace.start_daemon()
    client = workspace.client()
    acknowledged = [
        client.submit([JobSpec(class_name="Echo", method="handle", params=[n])]).ids[0]
        for n in range(150)
    ]
    daemon.kill()
    client.close()
    workspace.start_daemon()
    client = workspace.client()
    ended = [client.wait(job_id, 30) for job_id in acknowledged]
    failed = [job for job in ended if job.state is not JobState.SUCCEEDED]
    assert len(failed) <= 2, failed
    for job in failed:
        assert job.state is JobState.FAILED and job.error is not None
        assert job.error.type == "Interrupted"
    assert [job.result for job in ended if job.state is JobState.SUCCEEDED] == [
        [n] for n, job in enumerate(ended) if job.state is JobState.SUCCEEDED
    ]


def test_sigterm_drains_then_requeues_what_is_still_running(workspace: Workspace) -> None:
    workspace.write_config({"daemon": {"shutdown_timeout": 1}})
    daemon = workspace.start_daemon()
    client = workspace.client()
    quick_marker = workspace.root / "quick"
    slow_marker = workspace.root / "slow"
    quick = client.submit(
        [JobSpec(class_name="Sleep", method="handle", params=[0.5, str(quick_marker)])]
    ).ids[0]
    slow = client.submit(
        [JobSpec(class_name="Sleep", method="handle", params=[30, str(slow_marker)])]
    ).ids[0]
    wait_for(lambda: quick_marker.exists() and slow_marker.exists())
    slow_worker = int(slow_marker.read_text())
    client.close()
    assert daemon.stop() == 0
    assert is_gone(slow_worker)
    workspace.start_daemon()
    client = workspace.client()
    assert client.get(quick).state is JobState.SUCCEEDED  # finished within the drain
    requeued = client.get(slow)
    assert requeued.state in (JobState.QUEUED, JobState.RUNNING)
    assert requeued.history[0].outcome is Outcome.INTERRUPTED
    assert requeued.attempts <= 1  # the interrupted attempt was given back
    client.cancel(slow)
