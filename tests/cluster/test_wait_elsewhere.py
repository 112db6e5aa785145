"""Several daemons on one SQLite store: a node's `wait()` returns when another node ends
the job."""

from __future__ import annotations

from bgjobs.model import JobState
from tests.cluster.conftest import MakeCluster
from tests.support.cluster import waited_through


def test_a_node_s_wait_returns_when_another_node_ends_the_job(make_cluster: MakeCluster) -> None:
    cluster = make_cluster()
    done = waited_through(cluster, cluster["a"], cluster["b"])
    assert done.state is JobState.SUCCEEDED, done
    assert done.owner == "a"
