"""Node rows for tests: what a daemon registers about itself, written by a test into the
store of a workspace's daemon where that daemon does not (yet) register itself."""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta

from bgjobd.store.sqlite import SQLiteStore
from bgjobs.config import Config, load_config
from bgjobs.model import NodeInfo
from tests.support.workspace import Workspace


def workspace_config(workspace: Workspace) -> Config:
    return load_config(workspace.config_path)


def node_row(
    name: str,
    *,
    pid: int,
    host: str | None = None,
    address: str = "",
    beat_ago: float = 1.0,
    lease: float = 30.0,
    busy: int = 0,
    total: int = 2,
) -> NodeInfo:
    now = datetime.now(UTC)
    beat = now - timedelta(seconds=beat_ago)
    return NodeInfo(
        name=name,
        host=host or socket.gethostname(),
        pid=pid,
        address=address,
        started_at=now - timedelta(minutes=5),
        heartbeat_at=beat,
        lease_until=beat + timedelta(seconds=lease),
        workers_busy=busy,
        workers_total=total,
    )


def registered_nodes(config: Config) -> list[NodeInfo]:
    store = SQLiteStore(config.database_path)
    try:
        return store.nodes()
    finally:
        store.close()


def register(config: Config, node: NodeInfo) -> None:
    """Add the row as a node would at its start, in a transaction of its own."""
    store = SQLiteStore(config.database_path)
    try:
        existing = store.register_node(node)
        store.commit()
    finally:
        store.close()
    assert existing is None, f"a live node already has the name {node.name}: {existing}"


def ensure_own_row(workspace: Workspace, daemon_pid: int) -> NodeInfo:
    """The daemon's own row: the one it registered, or (a daemon that does not register
    itself) one written here in its name, for `nodes` to find."""
    config = workspace_config(workspace)
    for node in registered_nodes(config):
        if node.name == config.node_name:
            return node
    node = node_row(config.node_name, pid=daemon_pid, address=str(workspace.socket_path))
    register(config, node)
    return node
