"""Several bgjobs daemons on one store, standing in for hosts: each with its own
workspace (storage directory for locks and logs, socket, `[daemon] node` name), all with
one `[store]`: the first node's SQLite database, or a PostgreSQL schema.

Jobs are submitted round robin over the nodes' sockets (one `run_background_job()` call
or one batch each, from one client), so each node takes its share of the submits; the counts are the
shared store's, read through the first node."""

from __future__ import annotations

import itertools
from typing import Final

from bench import procs
from bench.bgjobs_target import BgjobsTarget, Daemon, Workspace
from bgjobs.errors import ExitCode

REFUSED_MARK: Final = "store.backend"
"""What bgjobd's ConfigError says when it does not serve the configured backend."""


class DaemonRefused(RuntimeError):
    """A node exited at start, refusing its configuration (e.g. a backend not served)."""


def postgres_store(dsn: str, schema: str) -> str:
    return f'backend = "postgresql"\ndsn = "{dsn}"\nschema = "{schema}"'


def node_workspaces(
    count: int, *, workers: int, store: str | None = None, label: str = "nodes"
) -> list[Workspace]:
    """`count` workspaces, node1..nodeN, on one store: the `[store]` table's body `store`,
    or (None) the first workspace's SQLite database."""
    workspaces = [Workspace(label, workers=workers) for _ in range(count)]
    body = store if store is not None else f'path = "{workspaces[0].database}"'
    for number, workspace in enumerate(workspaces, start=1):
        text = workspace.config.read_text()
        text = text.replace("[daemon]\n", f'[daemon]\nnode = "node{number}"\n', 1)
        workspace.config.write_text(f"{text}\n[store]\n{body}\n")
    return workspaces


def start_nodes(workspaces: list[Workspace]) -> list[Daemon]:
    """A daemon per workspace, all answering; a node that refuses its configuration raises
    DaemonRefused (the ones started are stopped)."""
    daemons: list[Daemon] = []
    try:
        for workspace in workspaces:
            daemons.append(Daemon(workspace))
        for daemon in daemons:
            try:
                daemon.wait_ready()
            except RuntimeError:
                code = daemon.process.poll()
                if code == ExitCode.USAGE and REFUSED_MARK in daemon.tail():
                    raise DaemonRefused(daemon.tail(3)) from None
                raise
    except BaseException:
        for daemon in daemons:
            daemon.stop()
        raise
    return daemons


class ClusterTarget(BgjobsTarget):
    """The workloads' view of several nodes: submits round robin over their sockets."""

    def __init__(self, daemons: list[Daemon], name: str) -> None:
        super().__init__(daemons[0], name)
        self.daemons = daemons
        self._configs = itertools.cycle([str(d.workspace.config) for d in daemons])

    def roles(self) -> dict[str, list[int]]:
        pids = [daemon.pid for daemon in self.daemons]
        workers = [pid for daemon in self.daemons for pid in procs.tree(daemon.pid)[1:]]
        return {"daemons": pids, "workers": workers}

    def _next_config(self) -> str:
        return next(self._configs)

    def stop(self) -> float | None:
        """Every node stopped (SIGTERM); the longest stop, or None if one was killed."""
        took = [daemon.stop() for daemon in self.daemons]
        if any(value is None for value in took):
            return None
        return max(value for value in took if value is not None)
