"""A pause is stored: made through one node, it holds on every node sharing the store,
and a resume through another releases the jobs."""

from __future__ import annotations

from bgjobs.model import JobSpec, JobState
from tests.cluster.conftest import MakeCluster


def test_a_pause_through_one_node_holds_on_the_other(make_cluster: MakeCluster) -> None:
    cluster = make_cluster().start()
    a, b = cluster["a"], cluster["b"]
    paused = a.bgjobctl("pause", "--class", "Sleep")
    assert paused.returncode == 0, paused.stderr

    client = b.client()
    held = client.submit([JobSpec(class_name="Sleep", method="handle", params=[0])]).ids[0]
    ran = client.submit([JobSpec(class_name="Echo", method="handle", params=["x"])]).ids[0]
    assert client.wait(ran, 10).state is JobState.SUCCEEDED
    assert cluster.job(held).state is JobState.QUEUED
    assert "paused: class Sleep" in b.bgjobctl("stats").stdout

    resumed = b.bgjobctl("resume", "--class", "Sleep")
    assert resumed.returncode == 0, resumed.stderr
    assert client.wait(held, 10).state is JobState.SUCCEEDED
