"""A daemon on PostgreSQL decides its submit fast path (a job stored as running with an idle
worker) inside the INSERT: a pause committed by another connection holds for the very next
submit, with no round trip of its own and nothing cached."""

from __future__ import annotations

import time

from bgjobs.model import JobSpec, JobState, PauseKind
from tests.pgcluster.conftest import MakePgCluster


def test_a_pause_committed_by_another_connection_holds_for_the_next_fast_path_submit(
    make_pg_cluster: MakePgCluster,
) -> None:
    cluster = make_pg_cluster(names=("a",)).start()
    client = cluster["a"].client()
    # The fast path in use: workers idle, nothing paused, a job started at once.
    warm = client.submit([JobSpec(class_name="Echo", method="handle", params=["warm"])]).ids[0]
    assert client.wait(warm, 10).state is JobState.SUCCEEDED

    with cluster.store() as other:  # another connection, as another node's would be
        assert other.pause(PauseKind.CLASS, "Echo", time.time())
        other.commit()
    held = client.submit([JobSpec(class_name="Echo", method="handle", params=["held"])]).ids[0]
    ran = client.submit([JobSpec(class_name="Sleep", method="handle", params=[0])]).ids[0]
    assert client.wait(ran, 10).state is JobState.SUCCEEDED
    job = cluster.job(held)
    assert job.state is JobState.QUEUED and job.attempts == 0

    with cluster.store() as other:
        assert other.resume(PauseKind.CLASS, "Echo")
        other.commit()
    assert client.wait(held, 10).state is JobState.SUCCEEDED
