"""SIGHUP: reopen the logs and reload the configuration, refusing a bad one."""

from __future__ import annotations

import signal

import pytest

from bgjobs.errors import RefusedError
from bgjobs.model import JobSpec, JobState
from tests.support.waiting import wait_for
from tests.support.workspace import Workspace


def test_reload_applies_a_new_allow_list(workspace: Workspace) -> None:
    workspace.write_config({"allowed_jobs": {"Echo": []}})
    daemon = workspace.start_daemon()
    client = workspace.client()
    with pytest.raises(RefusedError):
        client.submit([JobSpec(class_name="Echo", method="handle")])
    workspace.write_config({"allowed_jobs": {"Echo": ["handle"]}})
    daemon.signal(signal.SIGHUP)
    wait_for(lambda: "configuration reloaded" in daemon.stderr, what="the reload")
    job_id = client.submit([JobSpec(class_name="Echo", method="handle")]).ids[0]
    assert client.wait(job_id, 10).state is JobState.SUCCEEDED


def test_a_bad_config_is_refused_and_the_old_one_kept(workspace: Workspace) -> None:
    daemon = workspace.start_daemon()
    workspace.write_config(raw="retry_attempts = 'many'\n")
    daemon.signal(signal.SIGHUP)
    wait_for(lambda: "reload refused" in daemon.stderr, what="the refusal")
    assert "retry_attempts" in workspace.error_log()
    with workspace.client() as client:
        job_id = client.submit([JobSpec(class_name="Echo", method="handle")]).ids[0]
        assert client.wait(job_id, 10).state is JobState.SUCCEEDED


def test_logs_reopen_after_rotation(workspace: Workspace) -> None:
    daemon = workspace.start_daemon()
    log = workspace.storage / "logs" / "background_jobs.log"
    rotated = log.with_suffix(".log.1")
    log.rename(rotated)
    daemon.signal(signal.SIGHUP)
    wait_for(lambda: "configuration reloaded" in daemon.stderr)
    assert workspace.bgjobctl("submit", "Echo", "handle", "after", "--wait").returncode == 0
    assert "succeeded" in log.read_text()
    assert "after" not in rotated.read_text()
