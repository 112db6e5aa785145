"""PostgreSQL going away under loaded nodes and coming back: its connections terminated,
or the server restarted. No acknowledged job is lost, none succeeds twice, submits meanwhile
are refused with `store_unavailable` (nothing stored for them), each node says once that
it lost the store and once that it has it back, and every node serves again."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest

from bgjobctl import run_background_job
from bgjobctl.library import close_clients
from bgjobs.errors import BgjobsError, RequestFailed
from bgjobs.model import JobSpec, JobState, Outcome
from tests.pgcluster.conftest import MakePgCluster, node_name
from tests.store.support import PG_DSN
from tests.support.cluster import Cluster, Node
from tests.support.procs import not_a_subreaper
from tests.support.tcpproxy import TcpProxy
from tests.support.waiting import wait_for
from tests.support.workspace import Workspace

BATCH = 10
PAUSE = 0.05
"""Between a submitter's batches: load enough to be going on during the outage, not so
much that running it all afterwards takes long."""
BEFORE = AFTER = 300
"""Jobs acknowledged before the outage, and again after it (the nodes serve again)."""
SETTINGS = {
    "allowed_jobs": {"Token": ["handle"]},
    # Longer than the outages here: no node is cut off, none reclaims another's jobs.
    "daemon": {"lease_seconds": 15},
}
LOST = "- PostgreSQL cannot be reached"
BACK = "- PostgreSQL reached again"
"""The daemon's own lines (a job's line may quote the store's error)."""


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


@dataclass
class Load:
    """Submitters, one per node, each sending batches of token jobs until stopped."""

    tokens: Path
    acknowledged: dict[int, str] = field(default_factory=dict)
    """Job id: its token, for every job a node acknowledged."""
    refused: dict[str, int] = field(default_factory=dict)
    """How many batches were refused, by error code (or kind)."""
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    threads: list[threading.Thread] = field(default_factory=list)

    def start(self, cluster: Cluster) -> Load:
        for node in cluster.nodes.values():
            thread = threading.Thread(target=self._submit, args=(node,), daemon=True)
            thread.start()
            self.threads.append(thread)
        direct = threading.Thread(target=self._submit_directly, args=(cluster["a"],), daemon=True)
        direct.start()
        self.threads.append(direct)
        return self

    def _submit_directly(self, node: Node) -> None:
        """`run_background_job` one job at a time, on PostgreSQL its own INSERT (the daemon
        only when the database does not answer it)."""
        sent = 0
        while not self.stop.is_set():
            name = f"direct-{sent}"
            sent += 1
            try:
                handle = run_background_job(
                    "Token",
                    "handle",
                    [str(self.tokens), name],
                    config=str(node.config_path),
                    fallback="error",
                )
            except RequestFailed as exc:
                self._refused(f"direct {exc.code}")
                self.stop.wait(0.05)
                continue
            except BgjobsError as exc:
                self._refused(f"direct {type(exc).__name__}")
                self.stop.wait(0.05)
                continue
            assert handle.id is not None
            with self.lock:
                self.acknowledged[handle.id] = name
            self.stop.wait(PAUSE / BATCH)

    def _submit(self, node: Node) -> None:
        client = node.client(timeout=30)
        batch = 0
        while not self.stop.is_set():
            names = [f"{node.name}-{batch}-{n}" for n in range(BATCH)]
            batch += 1
            specs = [
                JobSpec(class_name="Token", method="handle", params=[str(self.tokens), name])
                for name in names
            ]
            try:
                ids = client.submit(specs).ids
            except RequestFailed as exc:
                self._refused(str(exc.code))
                self.stop.wait(0.05)
                continue
            except BgjobsError as exc:
                self._refused(type(exc).__name__)
                client = node.client(timeout=30)
                continue
            with self.lock:
                self.acknowledged.update(zip(ids, names, strict=True))
            self.stop.wait(PAUSE)

    def _refused(self, code: str) -> None:
        with self.lock:
            self.refused[code] = self.refused.get(code, 0) + 1

    def count(self) -> int:
        with self.lock:
            return len(self.acknowledged)

    def finish(self) -> dict[int, str]:
        self.stop.set()
        for thread in self.threads:
            thread.join(60)
        close_clients()
        return dict(self.acknowledged)


def survive(cluster: Cluster, workspace: Workspace, outage: Callable[[], None]) -> None:
    """Load on every node, the outage in the middle of it, more load once it is over;
    then every acknowledged job has succeeded exactly once."""
    tokens = workspace.root / "tokens"
    load = Load(tokens).start(cluster)
    wait_for(lambda: load.count() >= BEFORE, timeout=60, what="load before the outage")
    outage()
    after = load.count()
    wait_for(lambda: load.count() >= after + AFTER, timeout=60, what="the nodes to serve again")
    acknowledged = load.finish()

    def all_succeeded() -> bool:
        counts = cluster["a"].client().list_jobs(states=[JobState.SUCCEEDED], limit=1).total
        return counts >= len(acknowledged)

    wait_for(all_succeeded, timeout=90, what="every acknowledged job to succeed")
    stored = {job.id: job for job in cluster.jobs()}
    lost = [job_id for job_id in acknowledged if job_id not in stored]
    assert not lost, f"acknowledged jobs lost: {lost[:10]}"
    for job_id in acknowledged:
        job = stored[job_id]
        assert job.state is JobState.SUCCEEDED, (job_id, job.state, job.history)
        # One attempt, its success: no lease ran out, nothing was run (or recorded) twice.
        assert job.attempts == 1, (job_id, job.attempts)
    assert set(lines(tokens)) >= set(acknowledged.values())
    for node in cluster.nodes.values():
        errors = node.error_log()
        assert errors.count(LOST) == errors.count(BACK) <= 2, errors[-3000:]
        assert node.process.answers()
    print(f"acknowledged {len(acknowledged)}, refused batches {load.refused}")


def terminate_nodes(cluster: Cluster) -> int:
    schema = cluster.store_settings["schema"]
    with psycopg.connect(PG_DSN, autocommit=True) as db:
        rows = db.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE %s",
            (f"{schema}%",),
        ).fetchall()
    return len(rows)


def test_connections_terminated_under_load_lose_no_acknowledged_job(
    make_pg_cluster: MakePgCluster, workspace: Workspace
) -> None:
    cluster = make_pg_cluster(SETTINGS).start()

    def terminate() -> None:
        assert terminate_nodes(cluster) >= 3

    survive(cluster, workspace, terminate)
    for node in cluster.nodes.values():
        errors = node.error_log()
        assert errors.count(LOST) >= 1 and errors.count(BACK) >= 1, errors[-3000:]


def port_5432_cluster() -> list[str] | None:
    """The version and name of the cluster on port 5432 (`pg_lsclusters`), if any."""
    if shutil.which("pg_lsclusters") is None:
        return None
    listed = subprocess.run(
        ["pg_lsclusters", "--no-header"], capture_output=True, text=True, check=False
    ).stdout
    for line in listed.splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[2] == "5432":
            return fields[:2]
    return None


def test_a_postgresql_restart_under_load_loses_no_acknowledged_job(
    make_pg_cluster: MakePgCluster, workspace: Workspace
) -> None:
    cluster_id = port_5432_cluster()
    if os.geteuid() != 0 or cluster_id is None:
        why = "restarting PostgreSQL takes root and pg_ctlcluster for the cluster on 5432"
        if os.environ.get("CI") == "true":
            pytest.fail(why)
        pytest.skip(why)
    cluster = make_pg_cluster(SETTINGS).start()

    def restart() -> None:
        # The machine's server, not the test's: its new postmaster must not become this
        # process's child (and be killed as a leftover) if this process is a subreaper.
        with not_a_subreaper():
            subprocess.run(
                ["pg_ctlcluster", "--skip-systemctl-redirect", *cluster_id, "restart"],
                check=True,
                timeout=60,
                start_new_session=True,
            )

    survive(cluster, workspace, restart)
    for node in cluster.nodes.values():
        errors = node.error_log()
        assert errors.count(LOST) == 1 and errors.count(BACK) == 1, errors[-3000:]


CUT_LEASE = 3
CUT_SETTINGS = {
    "allowed_jobs": {"Token": ["handle"]},
    "jobs": {"Token": {"retry_attempts": 2, "retry_delay_seconds": 0}},
    "daemon": {"lease_seconds": CUT_LEASE},
}
CUT_OFF = "this node cannot reach the store to renew its lease"


def test_a_node_cut_off_from_postgresql_stops_its_attempts_before_the_others_reclaim_them(
    make_pg_cluster: MakePgCluster, workspace: Workspace
) -> None:
    """Node c reaches the server through a relay that the test cuts: c cannot renew its
    lease, so it stops its attempts before the lease runs out, and the others run those
    jobs once it has: each job's token is written once (c's attempts never wrote theirs).
    Back on the network, c's late ends are refused, and it serves again."""
    with TcpProxy(("127.0.0.1", 5432)) as proxy:
        relayed = f"postgresql://postgres@127.0.0.1:{proxy.port}/test"
        cluster = make_pg_cluster(CUT_SETTINGS, per_node={"c": {"store": {"dsn": relayed}}})
        # c alone first, so that it claims the jobs: the others, reached without a relay and
        # told of c's commit at once, would win the race for them.
        cut_off, name = cluster["c"], node_name(cluster["c"])
        cut_off.start()
        tokens, gate = workspace.root / "tokens", workspace.root / "gate"
        specs = [
            JobSpec(
                class_name="Token", method="handle", params=[str(tokens), f"g{n}", 0, str(gate)]
            )
            for n in range(3)
        ]
        ids = cut_off.client().submit(specs).ids

        def running_on_c() -> list[int]:
            with cluster.store() as store:
                return [job.id for job in store.running(name)]

        wait_for(running_on_c, timeout=30, what="node c to run some of the jobs")
        wait_for(cut_off.lock_files, timeout=30, what="node c's workers to take them up")
        theirs = running_on_c()
        others = [node for node in cluster.nodes.values() if node is not cut_off]
        for node in others:
            node.start()

        proxy.cut()
        wait_for(lambda: CUT_OFF in cut_off.error_log(), timeout=30, what="c to stop its attempts")
        wait_for(lambda: not cut_off.lock_files(), timeout=10, what="c's attempts to end")
        wait_for(
            lambda: any(f"reclaimed from node {name}" in node.error_log() for node in others),
            timeout=30,
            what="another node to reclaim c's jobs",
        )
        gate.touch()
        jobs = [
            cluster.wait_for_job(job_id, lambda job: job.state.is_final, what="to end")
            for job_id in ids
        ]
        assert [job.state for job in jobs] == [JobState.SUCCEEDED] * len(ids)
        assert sorted(lines(tokens)) == sorted(f"g{n}" for n in range(3)), "a job ran twice"
        for job in jobs:
            if job.id in theirs:
                first = job.history[0]
                assert (first.node, first.outcome) == (name, Outcome.INTERRUPTED), job.history
                assert job.history[-1].node != name

        proxy.restore()
        wait_for(
            lambda: "the store answers again" in cut_off.error_log(),
            timeout=30,
            what="c to reach the store again",
        )
        late = cut_off.client().submit(
            [JobSpec(class_name="Token", method="handle", params=[str(tokens), "after"])]
        )
        cluster.wait_for_job(
            late.ids[0], lambda job: job.state is JobState.SUCCEEDED, what="c's new job"
        )
        assert [cluster.job(job.id).history for job in jobs] == [job.history for job in jobs]
        cluster.close()
        for node in cluster.nodes.values():
            node.process.stop()
