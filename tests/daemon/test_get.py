"""show: every field of a job, times in ISO 8601 with a timezone."""

from __future__ import annotations

import json
from datetime import datetime

from tests.support.workspace import Workspace


def test_show_json_has_every_field(workspace: Workspace) -> None:
    workspace.start_daemon()
    assert workspace.bgjobctl("submit", "Echo", "handle", "x", "--wait").returncode == 0
    shown = json.loads(workspace.bgjobctl("--json", "show", "1").stdout)
    for field in (
        "id",
        "class_name",
        "method",
        "params",
        "priority",
        "state",
        "run_at",
        "attempts",
        "max_attempts",
        "timeout",
        "created_at",
        "started_at",
        "finished_at",
        "result",
        "error",
        "history",
        "chain",
    ):
        assert field in shown
    for field in ("run_at", "created_at", "started_at", "finished_at"):
        assert datetime.fromisoformat(shown[field]).tzinfo is not None
    assert shown["history"][0]["outcome"] == "succeeded"
    # The global options are taken after the command as well.
    after = workspace.bgjobctl("show", "1", "--json", "--config", str(workspace.config_path))
    assert json.loads(after.stdout) == shown


def test_show_human_and_missing(workspace: Workspace) -> None:
    workspace.start_daemon()
    workspace.bgjobctl("submit", "Fail", "handle", "why", "--wait")
    human = workspace.bgjobctl("show", "1")
    assert human.returncode == 0
    assert "ValueError: why" in human.stdout and "attempts" in human.stdout
    assert "Traceback" in human.stdout
    missing = workspace.bgjobctl("show", "42")
    assert missing.returncode == 1 and "no job 42" in missing.stderr
