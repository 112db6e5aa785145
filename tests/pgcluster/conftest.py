"""Nodes on one PostgreSQL schema: each test's own schema on the test server (dropped after
the test, once its daemons have stopped). Skipped when the server does not answer, except
under CI (`CI=true`), where that fails the test."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import psycopg
import pytest
from psycopg import sql

from tests.store.support import PG_DSN, postgres_unavailable
from tests.support.cluster import Cluster, Node
from tests.support.waiting import wait_for
from tests.support.workspace import Workspace, merged

MakePgCluster = Callable[..., Cluster]


def node_name(node: Node) -> str:
    """The node's `[daemon] node` (its name in the store, the owner of its jobs)."""
    return str(node.settings["daemon"]["node"])


def require_postgres() -> None:
    why = postgres_unavailable()
    if why is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(why)
        pytest.skip(why)


def connections(schema: str) -> int:
    """The nodes' connections to the server still open (each names its node, and the
    test's nodes are named after the schema)."""
    with psycopg.connect(PG_DSN, autocommit=True) as db:
        row = db.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE %s",
            (f"{schema}%",),
        ).fetchone()
    return 0 if row is None else int(row[0])


@pytest.fixture
def make_pg_cluster(workspace: Workspace) -> Iterator[MakePgCluster]:
    """`make_pg_cluster(extra, names=("a", "b", "c"))`: nodes (not started) whose `[store]`
    is a PostgreSQL schema of this test's own; each node's name (and so its connection's
    application name) starts with the schema's, so what is left of them can be told."""
    require_postgres()
    schema = f"bgjobs_pgc_{uuid.uuid4().hex[:12]}"
    made: list[Cluster] = []

    def make(
        extra: dict[str, Any] | None = None,
        names: Sequence[str] = ("a", "b", "c"),
        per_node: dict[str, dict[str, Any]] | None = None,
    ) -> Cluster:
        store = {"backend": "postgresql", "dsn": PG_DSN, "schema": schema}
        cluster = Cluster(workspace, (), extra, store_settings=store)
        for name in names:
            own = merged((per_node or {}).get(name, {}), {"daemon": {"node": f"{schema}-{name}"}})
            cluster.add(name, own)
        made.append(cluster)
        return cluster

    yield make
    for cluster in made:
        cluster.close()
        for node in cluster.nodes.values():
            if node.daemon is not None and node.daemon.process.poll() is None:
                try:
                    node.daemon.stop(timeout=15)
                except subprocess.TimeoutExpired:
                    node.daemon.kill()
    wait_for(lambda: connections(schema) == 0, timeout=15, what="the nodes' connections to go")
    with psycopg.connect(PG_DSN, autocommit=True) as db:
        db.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
