"""`run_job.py`, the one-shot runner, through its real command line and real workers."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.support.procs import is_gone
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
