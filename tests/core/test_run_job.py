"""`run_job.py`, the one-shot runner, through its real command line and real workers."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from pathlib import Path

from bgjobs.model import JobSpec, JobState
from tests.support.procs import is_gone
from tests.support.waiting import wait_for
from tests.support.workspace import REPO, Workspace

LINE = re.compile(r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\] \[(INFO|SUCCESS|ERROR|SECURITY|WARNING)\] ")


def test_runs_a_job_and_logs_success(workspace: Workspace) -> None:
    done = workspace.run_job("Echo", "handle", "a,b")
    assert done.returncode == 0, done.stderr
    log = workspace.log()
    assert "[SUCCESS] Echo::handle - job 1 attempt 1/1 succeeded" in log
    assert all(LINE.match(line) for line in log.splitlines())
    assert workspace.lock_files() == []


def test_the_shipped_example_from_a_clean_checkout(tmp_path: Path) -> None:
    """What the README promises: the original's example, with the shipped configuration."""
    space = Workspace(tmp_path)
    try:
        config = (
            (REPO / "bgjobs.toml")
            .read_text()
            .replace('storage = "storage"', f'storage = "{tmp_path}/storage"')
        )
        (tmp_path / "bgjobs.toml").write_text(
            config.replace('jobs_package = "jobs"', 'jobs_package = "jobs"')
        )
        (tmp_path / "jobs").symlink_to(REPO / "jobs", target_is_directory=True)
        done = space.run_job("LessonCreatedService", "handle", "English Grammar 101")
        assert done.returncode == 0, done.stderr
        logs = tmp_path / "storage" / "logs"
        assert (
            "[SUCCESS] LessonCreatedService::handle" in (logs / "background_jobs.log").read_text()
        )
        lesson = json.loads((logs / "lesson_created.log").read_text().split("] ", 1)[1])
        assert lesson["title"] == "English Grammar 101"
        assert "New lesson created: English Grammar 101" in (logs / "notification.log").read_text()
        assert list((tmp_path / "storage" / "jobs").glob("*.lock")) == []
    finally:
        space.close()


def test_timeout_kills_the_job_and_its_grandchild(workspace: Workspace) -> None:
    workspace.write_config({"jobs": {"SpawnGrandchild": {"timeout": 1}}})
    pids = workspace.root / "pids"
    done = workspace.run_job("SpawnGrandchild", "handle", f"{pids},60")
    assert done.returncode == 1
    worker, grandchild = (int(pid) for pid in pids.read_text().split())
    assert is_gone(worker) and is_gone(grandchild)
    assert "timed out" in workspace.error_log()
    assert workspace.lock_files() == []


def test_a_crashing_child_is_a_failed_attempt(workspace: Workspace) -> None:
    workspace.write_config({"retry_attempts": 1, "retry_delay_seconds": 0})
    done = workspace.run_job("Crash", "handle", "segv")
    assert done.returncode == 1
    errors = workspace.error_log()
    assert "job 1 attempt 1/2 crashed: WorkerCrashed: worker process killed by SIGSEGV" in errors
    assert "job 1 failed after 2 attempts" in errors
    assert workspace.lock_files() == []


def test_forged_newline_in_params_cannot_forge_a_line(workspace: Workspace) -> None:
    forged = "x\n[2026-01-01 00:00:00] [SUCCESS] Fake::job - job 99 attempt 1/1 succeeded"
    assert workspace.run_job("Echo", "handle", forged).returncode == 0
    lines = workspace.log().splitlines()
    assert all(LINE.match(line) for line in lines)
    assert not any(line.startswith("[2026-01-01") for line in lines)
    assert any("\\n[2026-01-01 00:00:00] [SUCCESS] Fake::job" in line for line in lines)


def test_control_characters_in_a_failure_message_are_escaped(workspace: Workspace) -> None:
    assert workspace.run_job("Fail", "handle", "bad\r\x1b[31mred\u2028x").returncode == 1
    errors = workspace.error_log().splitlines()
    assert all(LINE.match(line) for line in errors)
    assert "bad\\r\\x1b[31mred\\u2028x" in errors[0]


def test_json_params_are_typed(workspace: Workspace) -> None:
    done = workspace.run_job("Echo", "handle", "--json-params", '[1, "a", {"k": [2.5, null]}]')
    assert done.returncode == 0, done.stderr
    job = workspace.client_store_job(1)
    assert job.result == [1, "a", {"k": [2.5, None]}]


def test_empty_params_mean_none_and_commas_split(workspace: Workspace) -> None:
    assert workspace.run_job("Echo", "handle", "").returncode == 0
    assert workspace.run_job("Echo", "handle", "a,,b").returncode == 0
    assert workspace.client_store_job(1).result == []
    assert workspace.client_store_job(2).result == ["a", "", "b"]


def test_usage_errors_exit_2_and_change_nothing(workspace: Workspace) -> None:
    for args in (
        ("Echo", "handle", "x", "soon"),
        ("Echo", "handle", "x", "-1"),
        ("Echo", "handle", "x", "nan"),
        ("Echo",),
        ("Echo", "handle", "--json-params", "{not json"),
        ("Echo", "handle", "--json-params", '{"a": 1}'),
        ("Echo", "handle", "x", "1", "extra"),
    ):
        done = workspace.run_job(*args)
        assert done.returncode == 2, (args, done.stderr)
        assert done.stderr.startswith("run_job.py: ")
    assert workspace.log() == ""
    assert not (workspace.storage / "bgjobs.db").exists()


def test_delay_is_logged_and_waited(workspace: Workspace) -> None:
    import time

    started = time.monotonic()
    assert workspace.run_job("Echo", "handle", "late", "1").returncode == 0
    assert time.monotonic() - started >= 1.0
    log = workspace.log()
    assert "job 1 delayed 1s by run_job.py" in log
    job = workspace.client_store_job(1)
    assert job.started_at is not None
    assert (job.started_at - job.created_at).total_seconds() >= 1.0


def test_lock_file_exists_while_running_with_its_details(workspace: Workspace) -> None:
    import subprocess
    import sys

    from tests.support.waiting import wait_for

    runner = subprocess.Popen(
        [sys.executable, str(REPO / "run_job.py"), "Sleep", "handle", "30"],
        cwd=workspace.root,
        env=workspace.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        lock = wait_for(workspace.lock_files, what="a lock file")[0]
        assert lock.name == "Sleep_handle_1.lock"
        info = json.loads(lock.read_text())
        assert info["id"] == 1 and info["class"] == "Sleep" and info["method"] == "handle"
        assert info["attempt"] == 1 and info["pid"] > 0 and info["started_at"] > 0
        # Deleting the lock file cancels the job (the original dashboard's cancel).
        lock.unlink()
        assert runner.wait(10) == 1
        assert is_gone(info["pid"])
        assert "cancelled (lock file removed)" in workspace.error_log()
    finally:
        runner.kill()
        runner.wait()


def test_output_is_captured_per_job(workspace: Workspace) -> None:
    assert workspace.run_job("Printer", "handle", "hello").returncode == 0
    output = (workspace.storage / "logs" / "jobs" / "1.log").read_text()
    assert "out: hello" in output and "err: hello" in output and "child: hello" in output
    assert workspace.run_job("Echo", "handle", "quiet").returncode == 0
    assert not (workspace.storage / "logs" / "jobs" / "2.log").exists()


def test_stale_lock_files_are_removed_at_start(workspace: Workspace) -> None:
    locks = workspace.storage / "jobs"
    locks.mkdir(parents=True)
    stale = locks / "Echo_handle_77.lock"
    stale.write_text(
        '{"id": 77, "class": "Echo", "method": "handle", "pid": 999999, '
        '"attempt": 1, "started_at": 1}'
    )
    assert workspace.run_job("Echo", "handle").returncode == 0
    assert not stale.exists()


def test_ctrl_c_cancels_the_job_and_stops_its_processes(workspace: Workspace) -> None:
    pids = workspace.root / "pids"
    runner = subprocess.Popen(
        [sys.executable, str(REPO / "run_job.py"), "SpawnGrandchild", "handle", f"{pids},60"],
        cwd=workspace.root,
        env=workspace.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: pids.exists() and len(pids.read_text().split()) == 2)
        worker, grandchild = (int(pid) for pid in pids.read_text().split())
        runner.send_signal(signal.SIGINT)
        assert runner.wait(15) == 1
        assert is_gone(worker) and is_gone(grandchild)
        assert workspace.client_store_job(1).state.value == "cancelled"
        assert workspace.lock_files() == []
    finally:
        runner.kill()
        runner.wait()


def _start_run_job(workspace: Workspace, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(REPO / "run_job.py"), *args],
        cwd=workspace.root,
        env=workspace.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def test_ctrl_c_while_the_job_waits_cancels_it_and_the_rest_of_its_chain(
    workspace: Workspace,
) -> None:
    runner = _start_run_job(workspace, "Echo", "handle", "x", "60", "--then", "Echo:handle")
    try:
        wait_for(lambda: "delayed 60s by run_job.py" in workspace.log())
        runner.send_signal(signal.SIGINT)
        assert runner.wait(15) == 1
        assert workspace.client_store_job(1).state is JobState.CANCELLED
        assert workspace.client_store_job(2).state is JobState.CANCELLED
        assert "job 1 cancelled: run_job.py was interrupted" in workspace.error_log()
    finally:
        runner.kill()
        runner.wait()


def test_a_cancel_sent_to_a_daemon_stops_a_run_job_attempt(workspace: Workspace) -> None:
    workspace.start_daemon()
    pids = workspace.root / "pids"
    runner = _start_run_job(workspace, "SpawnGrandchild", "handle", f"{pids},60")
    try:
        wait_for(lambda: pids.exists() and len(pids.read_text().split()) == 2)
        worker, grandchild = (int(pid) for pid in pids.read_text().split())
        cancelled = workspace.client().cancel(1)
        assert cancelled.state is JobState.CANCELLED
        assert runner.wait(15) == 1
        assert is_gone(worker) and is_gone(grandchild)
    finally:
        runner.kill()
        runner.wait()


def test_run_job_waits_while_its_class_is_at_its_limit_in_a_daemon(
    workspace: Workspace,
) -> None:
    workspace.write_config({"jobs": {"Sleep": {"max_concurrency": 1}}})
    workspace.start_daemon()
    client = workspace.client()
    held = client.submit([JobSpec(class_name="Sleep", method="handle", params=[1.5])]).ids[0]
    wait_for(lambda: client.get(held).state is JobState.RUNNING)
    done = workspace.run_job("Sleep", "handle", "0")
    assert done.returncode == 0, done.stderr
    daemons = client.get(held)
    mine = client.get(held + 1)
    assert daemons.finished_at is not None and mine.started_at is not None
    assert mine.started_at >= daemons.finished_at  # never both at once
