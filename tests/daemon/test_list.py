"""list: filter by state and class, newest first, limit and offset."""

from __future__ import annotations

import json

from tests.support.workspace import Workspace


def test_list_filters(workspace: Workspace) -> None:
    workspace.start_daemon()
    for value in ("a", "b"):
        workspace.bgjobctl("submit", "Echo", "handle", value, "--wait")
    workspace.bgjobctl("submit", "Fail", "handle", "x", "--wait")
    everything = json.loads(workspace.bgjobctl("--json", "list").stdout)
    assert [job["id"] for job in everything["jobs"]] == [3, 2, 1] and everything["total"] == 3
    failed = json.loads(workspace.bgjobctl("--json", "list", "--state", "failed").stdout)
    assert [job["id"] for job in failed["jobs"]] == [3]
    echo = json.loads(
        workspace.bgjobctl(
            "--json", "list", "--class", "Echo", "--limit", "1", "--offset", "1"
        ).stdout
    )
    assert [job["id"] for job in echo["jobs"]] == [1] and echo["total"] == 2
    table = workspace.bgjobctl("list")
    assert table.returncode == 0 and "succeeded" in table.stdout and "Fail::handle" in table.stdout
    bad = workspace.bgjobctl("list", "--limit", "0")
    assert bad.returncode == 2
