"""Waiting through one node for a job another node runs: attempts' ends send no notice, so
the waited-for jobs are read again (`bgjobd.publisher`), and `wait()` returns within about
WATCH_SECONDS of the end, wherever the job ran."""

from __future__ import annotations

import time

from bgjobd.publisher import WATCH_SECONDS
from bgjobs.model import JobSpec, JobState
from tests.pgcluster.conftest import MakePgCluster, node_name


def test_a_node_s_wait_returns_when_another_node_ends_the_job(
    make_pg_cluster: MakePgCluster,
) -> None:
    cluster = make_pg_cluster(names=("a", "b"))
    runner, other = cluster["a"], cluster["b"]
    runner.start()  # alone: the job can only run here
    sleep = JobSpec(class_name="Sleep", method="handle", params=[1.0])
    job_id = runner.client().submit([sleep]).ids[0]
    cluster.wait_for_job(job_id, lambda job: job.state is JobState.RUNNING, what="to run")
    other.start()

    done = other.client().wait(job_id, timeout=30)
    ended = time.time()
    assert done.state is JobState.SUCCEEDED, done
    assert done.owner == node_name(runner)
    assert done.finished_at is not None
    # Heard of within a few looks, not at some timeout.
    assert ended - done.finished_at.timestamp() < 20 * WATCH_SECONDS
