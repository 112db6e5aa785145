"""Several daemons on one SQLite store: a node's `wait()` returns when another node ends
the job (the waited-for jobs are read again, `bgjobd.publisher`)."""

from __future__ import annotations

from bgjobs.model import JobSpec, JobState
from tests.cluster.conftest import MakeCluster


def test_a_node_s_wait_returns_when_another_node_ends_the_job(make_cluster: MakeCluster) -> None:
    cluster = make_cluster()
    runner, other = cluster["a"], cluster["b"]
    runner.start()  # alone: the job can only run here
    sleep = JobSpec(class_name="Sleep", method="handle", params=[1.0])
    job_id = runner.client().submit([sleep]).ids[0]
    cluster.wait_for_job(job_id, lambda job: job.state is JobState.RUNNING, what="to run")
    other.start()

    done = other.client().wait(job_id, timeout=30)
    assert done.state is JobState.SUCCEEDED, done
    assert done.owner == "a"
