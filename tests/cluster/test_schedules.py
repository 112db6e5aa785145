"""A `* * * * *` schedule run by two nodes on one store, on a fast test clock that both
share (a minute every 4 s): exactly one job per minute, over several minutes and across a
restart of one node, whichever node submits each tick first."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from bgjobd.clock import TEST_CLOCK_ENV
from bgjobd.schedules import key_prefix, tick_key, tick_of_key
from tests.cluster.conftest import MakeCluster
from tests.support.cluster import Cluster
from tests.support.waiting import wait_for

SPEED = 15
"""Virtual seconds per real one: a tick's 60 s of grace are 4 real seconds, far more than
any start or restart takes here."""
EVERY_MINUTE = {
    "schedules": {"tick": {"cron": "* * * * *", "class": "Echo", "method": "handle", "params": [7]}}
}


def keys(cluster: Cluster) -> list[str]:
    return [job.key or "" for job in cluster.jobs("Echo")]


def test_two_nodes_make_one_job_per_minute_across_a_restart(make_cluster: MakeCluster) -> None:
    cluster = make_cluster(EVERY_MINUTE)
    start = datetime(2026, 1, 5, 9, 0, 50, tzinfo=UTC)
    # One timeline for both nodes (and for a node restarted with the same value).
    cluster.workspace.env[TEST_CLOCK_ENV] = f"{start.timestamp()},{time.time()},{SPEED}"
    cluster.start()
    wait_for(lambda: len(keys(cluster)) >= 2, timeout=60, what="two ticks")

    a = cluster["a"]
    assert a.process.stop() == 0  # b goes on alone meanwhile
    before = len(keys(cluster))
    a.start()
    wait_for(lambda: len(keys(cluster)) >= before + 2, timeout=60, what="two more ticks")
    for node in cluster.nodes.values():
        assert node.process.stop() == 0

    found = keys(cluster)
    assert len(found) >= 4
    assert all(key.startswith(key_prefix("tick")) for key in found)  # only the ticks' jobs
    first = tick_of_key(found[0])  # the first tick after the nodes started
    assert first >= datetime(2026, 1, 5, 9, 1, tzinfo=UTC)
    # Consecutive minutes in submit order, none missed, none twice.
    assert found == [tick_key("tick", first + timedelta(minutes=n)) for n in range(len(found))]
    for node in cluster.nodes.values():
        assert "schedule" not in node.error_log()
