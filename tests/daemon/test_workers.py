"""Attempts in worker processes: timeouts, crashes, recycling, fresh interpreters."""

from __future__ import annotations

import os
import signal

from bgjobs.model import JobSpec, JobState, Outcome
from tests.support.procs import is_gone
from tests.support.waiting import wait_for
from tests.support.workspace import Workspace


def test_timeout_kills_and_fails_the_attempt(workspace: Workspace) -> None:
    workspace.write_config({"jobs": {"SpawnGrandchild": {"timeout": 1}}})
    workspace.start_daemon()
    client = workspace.client()
    pids = workspace.root / "pids"
    job_id = client.submit(
        [JobSpec(class_name="SpawnGrandchild", method="handle", params=[str(pids), 60])]
    ).ids[0]
    job = client.wait(job_id, 15)
    assert job.state is JobState.FAILED
    assert job.history[-1].outcome is Outcome.TIMED_OUT
    assert job.error is not None and job.error.type == "TimeoutError"
    worker, grandchild = (int(pid) for pid in pids.read_text().split())
    assert is_gone(worker) and is_gone(grandchild)
    assert workspace.lock_files() == []
    assert "job 1 attempt 1/1 timed out: TimeoutError: timed out after 1s" in (
        workspace.error_log()
    )


def test_a_worker_crash_is_retried_and_the_daemon_keeps_serving(workspace: Workspace) -> None:
    workspace.write_config({"retry_attempts": 1, "retry_delay_seconds": 0})
    daemon = workspace.start_daemon()
    client = workspace.client()
    job_id = client.submit([JobSpec(class_name="Crash", method="handle", params=["segv"])]).ids[0]
    job = client.wait(job_id, 15)
    assert job.state is JobState.FAILED and job.attempts == 2
    assert [a.outcome for a in job.history] == [Outcome.CRASHED, Outcome.CRASHED]
    assert "SIGSEGV" in (job.error.message if job.error else "")
    assert daemon.process.poll() is None
    ok = client.submit([JobSpec(class_name="Echo", method="handle", params=[1])]).ids[0]
    assert client.wait(ok, 10).result == [1]
    stats = client.stats()
    assert len(stats.workers) == 2


def test_a_worker_killed_while_idle_is_replaced_before_it_gets_a_job(
    workspace: Workspace,
) -> None:
    """A worker that dies with nothing to do (the OOM killer, a stray kill) is replaced at
    once, and takes no job down with it."""
    workspace.write_config({"daemon": {"workers": 1}})
    workspace.start_daemon()
    client = workspace.client()
    (idle,) = client.stats().workers
    os.kill(idle.pid, signal.SIGKILL)
    wait_for(
        lambda: [worker.pid for worker in client.stats().workers] not in ([], [idle.pid]),
        what="a replacement worker",
    )
    job_id = client.submit([JobSpec(class_name="Echo", method="handle", params=[1])]).ids[0]
    job = client.wait(job_id, 15)
    assert job.state is JobState.SUCCEEDED
    assert [a.outcome for a in job.history] == [Outcome.SUCCEEDED]
    assert f"worker {idle.pid} died while idle" in workspace.daemons[-1].stderr


def test_a_job_handed_to_a_worker_that_just_died_gets_the_attempt_back(
    workspace: Workspace,
) -> None:
    """A job handed to a worker that dies before taking it up never ran: with no retries
    it still runs, and succeeds. (The worker is stopped, so that it surely gets the job
    and surely never starts it, then killed.)"""
    workspace.write_config({"daemon": {"workers": 1}})
    workspace.start_daemon()
    client = workspace.client()
    (idle,) = client.stats().workers
    os.kill(idle.pid, signal.SIGSTOP)
    job_id = client.submit([JobSpec(class_name="Echo", method="handle", params=[1])]).ids[0]
    wait_for(lambda: client.get(job_id).state is JobState.RUNNING, what="the hand-over")
    os.kill(idle.pid, signal.SIGKILL)
    job = client.wait(job_id, 15)
    assert job.state is JobState.SUCCEEDED, job.error
    assert job.attempts == 1
    assert [a.outcome for a in job.history] == [Outcome.INTERRUPTED, Outcome.SUCCEEDED]
    assert job.history[0].worker_pid == idle.pid
    assert "killed by SIGKILL before the attempt began); queued again" in workspace.error_log()


def test_max_jobs_per_worker_recycles(workspace: Workspace) -> None:
    workspace.write_config({"daemon": {"workers": 1, "max_jobs_per_worker": 2}})
    workspace.start_daemon()
    client = workspace.client()
    pids = []
    for _ in range(4):
        job_id = client.submit([JobSpec(class_name="Echo", method="handle")]).ids[0]
        pids.append(client.wait(job_id, 10).history[-1].worker_pid)
    assert pids[0] == pids[1] and pids[2] == pids[3] and pids[1] != pids[2]
    retired = pids[0]
    assert retired is not None
    wait_for(lambda: is_gone(retired), what="the retired worker to exit")


def test_fresh_isolation_uses_a_new_process_per_attempt(workspace: Workspace) -> None:
    workspace.write_config({"daemon": {"isolation": "fresh"}})
    workspace.start_daemon()
    client = workspace.client()
    pids = set()
    for _ in range(3):
        job_id = client.submit([JobSpec(class_name="Echo", method="handle")]).ids[0]
        job = client.wait(job_id, 15)
        assert job.state is JobState.SUCCEEDED
        pids.add(job.history[-1].worker_pid)
    assert len(pids) == 3


def test_async_jobs_are_awaited_and_results_kept(workspace: Workspace) -> None:
    workspace.start_daemon()
    client = workspace.client()
    job_id = client.submit(
        [JobSpec(class_name="AsyncEcho", method="handle", params=[{"a": [1, 2]}])]
    ).ids[0]
    assert client.wait(job_id, 10).result == {"a": [1, 2]}


def test_an_unencodable_result_is_stored_as_its_repr(workspace: Workspace) -> None:
    workspace.start_daemon()
    client = workspace.client()
    job = client.wait(
        client.submit([JobSpec(class_name="Unencodable", method="handle")]).ids[0], 10
    )
    assert job.state is JobState.SUCCEEDED and str(job.result).startswith("<object object")
    assert "is not encodable" in workspace.error_log()


def test_job_output_is_captured_and_shown_by_logs(workspace: Workspace) -> None:
    workspace.start_daemon()
    assert workspace.bgjobctl("submit", "Printer", "handle", "hi", "--wait").returncode == 0
    shown = workspace.bgjobctl("logs", "1")
    assert shown.returncode == 0
    assert "out: hi" in shown.stdout and "err: hi" in shown.stdout and "child: hi" in shown.stdout
    execution = workspace.bgjobctl("logs", "--lines", "2")
    assert execution.stdout.count("\n") == 2 and "succeeded" in execution.stdout


def test_a_jobs_package_that_does_not_import_fails_attempts_not_the_daemon(
    workspace: Workspace,
) -> None:
    broken = workspace.root / "brokenjobs"
    broken.mkdir()
    (broken / "__init__.py").write_text("class Echo:\n    def handle(self):\n        return (\n")
    workspace.write_config({"jobs_package": "brokenjobs"})
    daemon = workspace.start_daemon()
    client = workspace.client()
    job = client.wait(client.submit([JobSpec(class_name="Echo", method="handle")]).ids[0], 15)
    assert job.state is JobState.FAILED
    assert job.error is not None and job.error.type == "SyntaxError"
    assert "cannot import the jobs package" in daemon.stderr
    client.ping()


def test_a_timed_out_jobs_output_is_kept(workspace: Workspace) -> None:
    workspace.write_config({"jobs": {"Chatty": {"timeout": 1}}})
    workspace.start_daemon()
    client = workspace.client()
    job = client.wait(
        client.submit(
            [JobSpec(class_name="Chatty", method="handle", params=["last words", 60])]
        ).ids[0],
        15,
    )
    assert job.state is JobState.FAILED and job.error is not None
    assert job.error.type == "TimeoutError"
    output = workspace.storage / "logs" / "jobs"
    assert (output / f"{job.id}.log").read_text() == "last words\n"
    worker = job.history[-1].worker_pid
    assert not (output / f".worker-{worker}.out").exists()


def test_output_of_retries_is_appended_and_silent_jobs_leave_no_file(
    workspace: Workspace,
) -> None:
    workspace.write_config(
        {"retry_attempts": 1, "retry_delay_seconds": 0, "daemon": {"workers": 1}}
    )
    workspace.start_daemon()
    client = workspace.client()
    failing = client.wait(
        client.submit([JobSpec(class_name="Chatty", method="fail", params=["try"])]).ids[0], 15
    )
    quiet = client.wait(client.submit([JobSpec(class_name="Echo", method="handle")]).ids[0], 15)
    output = workspace.storage / "logs" / "jobs"
    assert (output / f"{failing.id}.log").read_text() == "try\ntry\n"
    assert not (output / f"{quiet.id}.log").exists()
    shown = workspace.bgjobctl("logs", str(quiet.id))
    assert shown.returncode == 0 and shown.stdout == ""
    assert f"job {quiet.id} (succeeded) printed nothing" in shown.stderr
