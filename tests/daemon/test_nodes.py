"""`bgjobctl nodes`, and the node of each attempt in `list` and `show`.

The rows are those the store holds: the daemon's own (written here in its name where the
daemon does not register itself) and a peer's, written as a peer would at its start."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import msgspec

from bgjobctl.commands.nodes import _remarks
from bgjobs.protocol import (
    HEADER_BYTES,
    FrameEncoder,
    ListNodes,
    NodeList,
    decode_reply,
    decode_request,
)
from tests.support.nodes import ensure_own_row, node_row, register, workspace_config
from tests.support.workspace import Workspace

PEER = "peer-b"


def _body(message: msgspec.Struct) -> bytes:
    return FrameEncoder().encode(message)[HEADER_BYTES:]


def test_list_nodes_and_its_reply_round_trip() -> None:
    request = ListNodes(rid=7)
    assert decode_request(_body(request)) == request
    reply = NodeList(
        rid=7,
        nodes=[node_row("alpha", pid=41, address="/run/a.sock", busy=1, total=4)],
        answered_by="alpha",
        now=datetime.now(UTC),
    )
    assert decode_reply(_body(reply)) == reply


def test_remarks_name_the_answering_node_and_an_expired_lease() -> None:
    now = datetime.now(UTC)
    live = node_row("alpha", pid=1)
    expired = node_row("beta", pid=2, beat_ago=90, lease=30)
    reply = NodeList(nodes=[live, expired], answered_by="alpha", now=now)
    assert _remarks(live, reply) == "(this node)"
    assert _remarks(expired, reply) == "(lease expired)"
    assert _remarks(live, msgspec.structs.replace(reply, answered_by="beta")) == ""


def test_nodes_lists_every_node_and_says_which_answered(workspace: Workspace) -> None:
    daemon = workspace.start_daemon()
    config = workspace_config(workspace)
    own = ensure_own_row(workspace, daemon.pid)
    register(
        config,
        node_row(PEER, pid=4242, host="peer-host", address="/run/b.sock", busy=1, total=4),
    )

    listing = json.loads(workspace.bgjobctl("--json", "nodes").stdout)
    assert listing["answered_by"] == config.node_name
    by_name = {node["name"]: node for node in listing["nodes"]}
    assert set(by_name) >= {config.node_name, PEER}
    assert by_name[config.node_name]["pid"] == own.pid
    peer = by_name[PEER]
    assert (peer["host"], peer["pid"], peer["address"]) == ("peer-host", 4242, "/run/b.sock")
    assert (peer["workers_busy"], peer["workers_total"]) == (1, 4)
    beat = datetime.fromisoformat(peer["heartbeat_at"])
    assert beat.tzinfo is not None
    assert datetime.fromisoformat(listing["now"]) - beat >= timedelta(seconds=1)

    table = workspace.bgjobctl("nodes")
    assert table.returncode == 0, table.stderr
    lines = {line.split()[0]: line for line in table.stdout.splitlines()[1:]}
    assert lines[config.node_name].endswith("(this node)")
    assert re.search(r"\bpeer-host\s+4242\s+/run/b\.sock\s+\d+s ago\s+1/4 busy$", lines[PEER])


def test_list_and_show_name_the_node_of_each_attempt(workspace: Workspace) -> None:
    workspace.write_config({"jobs": {"Fail": {"retry_attempts": 1, "retry_delay_seconds": 0}}})
    workspace.start_daemon()
    assert workspace.bgjobctl("submit", "Fail", "handle", "x", "--wait").returncode != 0
    assert workspace.bgjobctl("submit", "Echo", "handle", "later", "--delay", "300").returncode == 0

    listed = json.loads(workspace.bgjobctl("--json", "list").stdout)["jobs"]
    ran, waits = sorted(listed, key=lambda job: job["id"])
    node = ran["owner"]
    assert node and ran["state"] == "failed" and waits["state"] == "scheduled"
    table = workspace.bgjobctl("list").stdout.splitlines()
    assert table[0].split()[-1] == "NODE"
    rows = {line.split()[0]: line for line in table[1:]}
    assert rows["1"].endswith(f"  {node}") and rows["2"].endswith("  -")

    shown = json.loads(workspace.bgjobctl("--json", "show", "1").stdout)
    assert [attempt["node"] for attempt in shown["history"]] == [node, node]
    details = workspace.bgjobctl("show", "1").stdout
    assert re.search(rf"^\s*node  {re.escape(node)}$", details, re.MULTILINE)
    attempts = [line for line in details.splitlines() if re.match(r"\d+\s+failed", line)]
    assert len(attempts) == 2 and all(f"  {node}  " in line for line in attempts)
    assert re.search(r"^\s*node  -$", workspace.bgjobctl("show", "2").stdout, re.MULTILINE)
