"""The store dropped under running nodes (`DROP SCHEMA ... CASCADE`, a restore gone wrong):
as when SQLite's file is deleted, every node stops acknowledging, says why, exits non-zero
and refuses to start again on an empty store until an operator says so."""

from __future__ import annotations

import psycopg
from psycopg import sql

from bgjobs.model import JobSpec, JobState
from tests.pgcluster.conftest import MakePgCluster
from tests.store.support import PG_DSN
from tests.support.waiting import wait_for

ECHO = JobSpec(class_name="Echo", method="handle", params=["x"])
LOST_MARKER = "bgjobd.store-lost"


def test_a_dropped_schema_stops_every_node_busy_or_idle(make_pg_cluster: MakePgCluster) -> None:
    cluster = make_pg_cluster(names=("a", "b")).start()
    busy, idle = cluster["a"], cluster["b"]
    client = busy.client()
    assert client.wait(client.submit([ECHO]).ids[0], 10).state is JobState.SUCCEEDED
    sleeper = client.submit([JobSpec(class_name="Sleep", method="handle", params=[60])]).ids[0]
    wait_for(lambda: cluster.job(sleeper).state is JobState.RUNNING, what="the attempt to run")
    client.close()

    schema = str(cluster.store_settings["schema"])
    with psycopg.connect(PG_DSN, autocommit=True) as db:
        db.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))

    acknowledged, refusals = busy.process.submits_until_exit(ECHO)
    assert acknowledged == 0, "nothing is acknowledged into a dropped store"
    assert refusals <= {"store_unavailable", "unreachable"}, refusals
    # The idle node, sent nothing, finds out by itself.
    wait_for(lambda: idle.process.process.poll() is not None, timeout=20, what="the idle node")
    for node in (busy, idle):
        assert node.process.process.returncode != 0
        assert "STORE LOST" in node.process.stderr
        assert f"schema {schema!r} no longer holds bgjobs' tables" in node.process.stderr
        assert (node.storage / LOST_MARKER).exists()

    # A restart (systemd's Restart=on-failure) does not quietly begin on an empty schema.
    refused = busy.start(ready=False)
    assert refused.process.wait(30) != 0
    assert "the store was lost" in refused.stderr and LOST_MARKER in refused.stderr
    assert f"Restore the PostgreSQL schema {schema!r}" in refused.stderr
    (busy.storage / LOST_MARKER).unlink()
    busy.start()
    again = busy.client()
    assert again.wait(again.submit([ECHO]).ids[0], 10).state is JobState.SUCCEEDED
