"""The daemon as a node: it registers itself, heartbeats, leaves, and names itself on the
attempts it runs. These need the engine's node work (issue 11): until it lands they fail,
since the daemon neither registers in `nodes` nor runs attempts under `[daemon] node`."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from tests.support.nodes import registered_nodes, workspace_config
from tests.support.waiting import wait_for
from tests.support.workspace import Workspace


def _own_row(workspace: Workspace, name: str) -> dict[str, Any] | None:
    listing = json.loads(workspace.bgjobctl("--json", "nodes").stdout)
    return next((node for node in listing["nodes"] if node["name"] == name), None)


def test_the_daemon_registers_heartbeats_and_leaves(workspace: Workspace) -> None:
    workspace.write_config({"daemon": {"node": "alpha", "lease_seconds": 3, "workers": 2}})
    daemon = workspace.start_daemon()
    config = workspace_config(workspace)
    assert config.node_name == "alpha"

    first = wait_for(lambda: _own_row(workspace, "alpha"), what="the daemon's own row")
    assert first is not None
    assert first["pid"] == daemon.pid
    assert first["address"] == str(workspace.socket_path)
    assert first["workers_total"] == 2
    table = workspace.bgjobctl("nodes").stdout
    assert any(line.startswith("alpha ") and "(this node)" in line for line in table.splitlines())

    def renewed() -> bool:
        row = _own_row(workspace, "alpha")
        return row is not None and datetime.fromisoformat(
            row["heartbeat_at"]
        ) > datetime.fromisoformat(first["heartbeat_at"])

    wait_for(renewed, timeout=15, what="a heartbeat")
    assert daemon.stop() == 0
    assert all(node.name != "alpha" for node in registered_nodes(config))


def test_attempts_are_named_by_the_daemon_node(workspace: Workspace) -> None:
    workspace.start_daemon()
    node = workspace_config(workspace).node_name
    assert workspace.bgjobctl("submit", "Echo", "handle", "x", "--wait").returncode == 0
    listed = json.loads(workspace.bgjobctl("--json", "list").stdout)["jobs"]
    assert [job["owner"] for job in listed] == [node]
    shown = json.loads(workspace.bgjobctl("--json", "show", "1").stdout)
    assert [attempt["node"] for attempt in shown["history"]] == [node]
    table = workspace.bgjobctl("list").stdout.splitlines()
    assert any(line.endswith(f"  {node}") for line in table)
