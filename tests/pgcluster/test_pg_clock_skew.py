"""Nodes on hosts whose clocks disagree: leases are read on the database server's clock, so
a host whose clock runs minutes ahead does not find the others' leases ended (and reclaim
the jobs they run), and one whose clock lags is not found dead by the others.

The hosts' clocks are shifted with libfaketime (Debian's `libfaketime`, which `.ci/run`
installs) preloaded into their daemons and workers."""

from __future__ import annotations

import glob
import os
from datetime import datetime

import psycopg
import pytest

from bgjobs.model import JobSpec, JobState, NodeInfo
from tests.pgcluster.conftest import MakePgCluster, node_name
from tests.store.support import PG_DSN
from tests.support.cluster import Cluster
from tests.support.waiting import wait_for

LEASE_SECONDS = 3
SKEW_SECONDS = 120
"""Forty leases: far past any lease, either way."""
FAKETIME_LIBRARIES = "/usr/lib/*/faketime/libfaketime.so.1"


def clock_shifted_by(seconds: int) -> dict[str, str]:
    found = sorted(glob.glob(FAKETIME_LIBRARIES))
    if not found:
        why = f"libfaketime is not installed (no {FAKETIME_LIBRARIES})"
        if os.environ.get("CI") == "true":
            pytest.fail(why)
        pytest.skip(why)
    # Only the wall clock: the event loop's timers keep their monotonic one.
    return {
        "LD_PRELOAD": found[0],
        "FAKETIME": f"{seconds:+d}s",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
    }


def listed(cluster: Cluster) -> dict[str, NodeInfo]:
    with cluster.store() as store:
        found = {node.name: node for node in store.nodes()}
        store.rollback()
    return found


def server_now() -> float:
    with psycopg.connect(PG_DSN, autocommit=True) as db:
        row = db.execute("SELECT extract(epoch FROM clock_timestamp())::float8").fetchone()
    assert row is not None
    return float(row[0])


def test_nodes_whose_clocks_run_ahead_or_behind_agree_on_leases(
    make_pg_cluster: MakePgCluster,
) -> None:
    cluster = make_pg_cluster({"daemon": {"lease_seconds": LEASE_SECONDS}})
    runner, ahead, behind = cluster["a"], cluster["b"], cluster["c"]
    ahead_env, behind_env = clock_shifted_by(SKEW_SECONDS), clock_shifted_by(-SKEW_SECONDS)
    runner.start()
    client = runner.client()
    job_id = client.submit([JobSpec(class_name="Sleep", method="handle", params=[60])]).ids[0]
    cluster.wait_for_job(job_id, lambda job: job.state is JobState.RUNNING, what="to run")
    ahead.start(env=ahead_env)
    behind.start(env=behind_env)

    # Both skewed nodes renew their leases twice (each beat expires the nodes it finds
    # dead), and the runner beats meanwhile too.
    beats: dict[str, set[datetime]] = {node_name(node): set() for node in (ahead, behind)}

    def renewed_twice() -> bool:
        nodes = listed(cluster)
        for name, seen in beats.items():
            if name in nodes:
                seen.add(nodes[name].heartbeat_at)
        return all(len(seen) >= 3 for seen in beats.values())

    wait_for(renewed_twice, timeout=30, what="the skewed nodes to renew their leases twice")
    nodes, now = listed(cluster), server_now()
    assert sorted(nodes) == sorted(node_name(node) for node in (runner, ahead, behind))
    for info in nodes.values():  # every lease on the server's clock, whatever the host's
        assert 0 < info.lease_until.timestamp() - now <= LEASE_SECONDS + 1, info

    for node in (ahead, behind):  # their listings judge leases on that clock too
        listing = node.bgjobctl("nodes")
        assert listing.returncode == 0, listing.stderr
        assert all(name in listing.stdout for name in nodes), listing.stdout
        assert "lease expired" not in listing.stdout, listing.stdout

    job = cluster.job(job_id)
    assert job.state is JobState.RUNNING and job.attempts == 1, job
    assert job.owner == node_name(runner), "the job was not reclaimed from its live node"
    assert client.cancel(job_id).state is JobState.CANCELLED
    for node in (runner, ahead, behind):
        assert "is dead" not in node.log() + node.error_log(), node.name
