"""Waiting through one node for a job another node runs: attempts' ends send no notice, so
the waited-for jobs are read again (`bgjobd.publisher`), and `wait()` returns within about
WATCH_SECONDS of the end, wherever the job ran."""

from __future__ import annotations

import time

from bgjobd.publisher import WATCH_SECONDS
from bgjobs.model import JobState
from tests.pgcluster.conftest import MakePgCluster, node_name
from tests.support.cluster import waited_through


def test_a_node_s_wait_returns_when_another_node_ends_the_job(
    make_pg_cluster: MakePgCluster,
) -> None:
    cluster = make_pg_cluster(names=("a", "b"))
    runner = cluster["a"]
    done = waited_through(cluster, runner, cluster["b"])
    ended = time.time()
    assert done.state is JobState.SUCCEEDED, done
    assert done.owner == node_name(runner)
    assert done.finished_at is not None
    # Heard of within a few looks, not at some timeout.
    assert ended - done.finished_at.timestamp() < 20 * WATCH_SECONDS
