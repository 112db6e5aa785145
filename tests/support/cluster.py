"""Several daemons ("nodes") on one store, for the tests of the shared queue: each node has
its own configuration file, storage directory (lock files, logs), socket and `[daemon]
node` name, and every one of them (and `run_job.py`, through the workspace's own
`bgjobs.toml`) points `[store] path` at the same database, or (`store_settings`) names
the same PostgreSQL schema.

The nodes' daemons join the workspace's list, so the workspace stops them (and finds what
they left behind) when the test ends."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import tomli_w

from bgjobctl.address import Address
from bgjobctl.client import Client
from bgjobd.store.base import JobQuery, Store
from bgjobd.store.postgres import PostgresStore
from bgjobd.store.sqlite import SQLiteStore
from bgjobs.model import JobInfo, JobSpec, JobState
from tests.support.waiting import wait_for
from tests.support.workspace import DEFAULT_SETTINGS, DaemonProcess, Workspace, merged


class Node:
    """One daemon's configuration and, once started, its process."""

    def __init__(self, cluster: Cluster, name: str, settings: dict[str, Any]) -> None:
        self.cluster = cluster
        self.name = name
        root = cluster.workspace.root
        self.storage = root / f"storage-{name}"
        self.socket_path = cluster.workspace.socket_dir / f"{name}.sock"
        self.config_path = root / f"node-{name}.toml"
        self.settings = merged(
            settings,
            {
                "daemon": {"socket": str(self.socket_path), "storage": str(self.storage)},
                # A node's own `[store]` keys (its DSN, say) over the cluster's.
                "store": merged(cluster.store_settings, settings.get("store", {})),
            },
        )
        self.settings["daemon"].setdefault("node", name)
        self.config_path.write_bytes(tomli_w.dumps(self.settings).encode())
        self.daemon: DaemonProcess | None = None
        self._clients: list[Client] = []

    def start(self, *, ready: bool = True, env: dict[str, str] | None = None) -> DaemonProcess:
        workspace = self.cluster.workspace
        daemon = DaemonProcess(workspace, self.config_path, socket_path=self.socket_path, env=env)
        workspace.daemons.append(daemon)
        self.daemon = daemon
        return daemon.wait_ready() if ready else daemon

    @property
    def process(self) -> DaemonProcess:
        assert self.daemon is not None, f"node {self.name} was not started"
        return self.daemon

    def client(self, timeout: float = 30) -> Client:
        """A client of this node, closed by `Cluster.close` (which the test calls)."""
        client = Client(Address(unix_path=self.socket_path), timeout=timeout)
        self._clients.append(client)
        return client

    def bgjobctl(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        return self.cluster.workspace.bgjobctl("--config", str(self.config_path), *args)

    def log(self, name: str = "background_jobs.log") -> str:
        path = self.storage / "logs" / name
        return path.read_text() if path.exists() else ""

    def error_log(self) -> str:
        """WARNING lines and worse."""
        return self.log("background_jobs_errors.log")

    def lock_files(self) -> list[Path]:
        return sorted((self.storage / "jobs").glob("*.lock"))

    @contextmanager
    def paused(self) -> Iterator[None]:
        """SIGSTOP the daemon alone (not its workers); SIGCONT on the way out, whatever
        happens, so that the workspace can stop it."""
        self.process.signal(signal.SIGSTOP)
        try:
            yield
        finally:
            self.process.signal(signal.SIGCONT)

    def close(self) -> None:
        for client in self._clients:
            client.close()


class Cluster:
    """Nodes named `names` (their daemons not yet started), with `extra` settings merged
    into each one's configuration and into `run_job.py`'s."""

    def __init__(
        self,
        workspace: Workspace,
        names: Sequence[str] = ("a", "b"),
        extra: dict[str, Any] | None = None,
        store_settings: dict[str, Any] | None = None,
    ) -> None:
        self.workspace = workspace
        self.store_path = workspace.root / "shared.db"
        self.store_settings: dict[str, Any] = store_settings or {"path": str(self.store_path)}
        """The `[store]` table every node (and run_job.py) has: SQLite's file by default."""
        self.settings = merged(
            merged(DEFAULT_SETTINGS, extra or {}), {"store": self.store_settings}
        )
        # run_job.py reads the workspace's bgjobs.toml (BGJOBS_CONFIG): its own storage
        # directory (lock files, logs), the shared store.
        workspace.write_config(merged(extra or {}, {"store": self.store_settings}))
        self.nodes: dict[str, Node] = {}
        for name in names:
            self.add(name)

    def add(self, name: str, extra: dict[str, Any] | None = None) -> Node:
        """Another node (not started), with `extra` settings of its own."""
        node = self.nodes[name] = Node(self, name, merged(self.settings, extra or {}))
        return node

    def __getitem__(self, name: str) -> Node:
        return self.nodes[name]

    def start(self) -> Cluster:
        """Start every node's daemon, then wait for each to answer."""
        for node in self.nodes.values():
            node.start(ready=False)
        for node in self.nodes.values():
            node.process.wait_ready()
        return self

    def close(self) -> None:
        for node in self.nodes.values():
            node.close()

    # the store, read directly --------------------------------------------------------------

    @contextmanager
    def store(self) -> Iterator[Store]:
        store: Store
        if self.store_settings.get("backend") == "postgresql":
            store = PostgresStore(
                self.store_settings["dsn"], self.store_settings["schema"], application_name="tests"
            )
        else:
            store = SQLiteStore(self.store_path)
        try:
            yield store
        finally:
            store.close()

    def job(self, job_id: int) -> JobInfo:
        with self.store() as store:
            job = store.get(job_id)
        assert job is not None, f"job {job_id} is not in the store"
        return job

    def wait_for_job(
        self, job_id: int, condition: Callable[[JobInfo], bool], *, what: str, timeout: float = 30
    ) -> JobInfo:
        """The job as the store has it once `condition` holds for it."""
        seen: list[JobInfo] = []

        def holds() -> bool:
            seen.append(self.job(job_id))
            return condition(seen[-1])

        wait_for(holds, timeout=timeout, what=f"job {job_id}: {what}")
        return seen[-1]

    def jobs(self, class_name: str | None = None) -> list[JobInfo]:
        """Every job in the store (of this class), oldest first, as listings show them."""
        found: list[JobInfo] = []
        with self.store() as store:
            while True:
                page, _ = store.search(
                    JobQuery(
                        class_name=class_name, limit=1000, offset=len(found), oldest_first=True
                    )
                )
                found.extend(page)
                if len(page) < 1000:
                    break
        return found


def waited_through(cluster: Cluster, runner: Node, other: Node, *, timeout: float = 30) -> JobInfo:
    """A one-second job run by `runner` (started alone, so that only it can run the job),
    waited for through `other` (started once the job runs): the job as that wait returns
    it."""
    runner.start()
    sleep = JobSpec(class_name="Sleep", method="handle", params=[1.0])
    job_id = runner.client().submit([sleep]).ids[0]
    cluster.wait_for_job(job_id, lambda job: job.state is JobState.RUNNING, what="to run")
    other.start()
    return other.client().wait(job_id, timeout=timeout)
