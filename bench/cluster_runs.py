"""bgjobs with several nodes on one store (PostgreSQL with 1, 2 or 3 nodes; SQLite with
2), and the floor issue 12 compares a PostgreSQL submit with: a plain one-row INSERT +
COMMIT, measured in the same run."""

from __future__ import annotations

import time
from pathlib import Path

from bench.bgjobs_target import Daemon
from bench.cluster_target import ClusterTarget, node_workspaces, postgres_store, start_nodes
from bench.peers import pgbase
from bench.phases import Sizes, run_after, run_all
from bench.report import SystemResults, say
from bench.workloads import Counters, Latency

WORKERS_PER_NODE = 2


def cluster_systems() -> dict[str, tuple[str, int]]:
    """System name -> (backend, nodes)."""
    systems = {f"bgjobs-pg{count}": ("postgresql", count) for count in (1, 2, 3)}
    systems["bgjobs-sqlite2"] = ("sqlite", 2)
    return systems


def run_cluster(
    system: str, *, sizes: Sizes, only: set[str], counters: Counters, workdir: Path
) -> SystemResults:
    """One pass on `system`'s nodes; DaemonRefused (the backend not served) propagates."""
    backend, count = cluster_systems()[system]
    results = SystemResults(system)
    results.notes.append(
        f"{count} node(s) x {WORKERS_PER_NODE} workers on one {backend} store, submits round "
        "robin over the nodes"
    )
    say(f"\n== {system}: {results.notes[-1]} ==")
    schema = pgbase.fresh_schema("bgjobs") if backend == "postgresql" else None
    store = postgres_store(pgbase.DSN, schema) if schema else None
    workspaces = node_workspaces(count, workers=WORKERS_PER_NODE, store=store, label=system)
    target: ClusterTarget | None = None
    try:
        started = time.perf_counter()
        daemons: list[Daemon] = start_nodes(workspaces)
        target = ClusterTarget(daemons, system)
        results.record("startup", "start-up, every node answering", time.perf_counter() - started)
        run_all(target, results, sizes=sizes, only=only, counters=counters, workdir=workdir)
        run_after(target, results, sizes=sizes, only=only)
    finally:
        if target is not None:
            target.close()
            took = target.stop()
            results.record("stop", "stop (SIGTERM to exit)", took if took is not None else "killed")
        for workspace in workspaces:
            workspace.remove()
        if schema is not None:
            pgbase.drop_schema(schema)
    return results


def run_plain_insert(calls: int) -> SystemResults:
    """`calls` one-row INSERT + COMMIT, back to back on one psycopg connection, into a
    table of a fresh schema (bench/store_backends.py's scratch table), each timed."""
    from bench.store_backends import postgres_plain

    results = SystemResults("pg insert")
    results.notes.append("one-row INSERT + COMMIT, psycopg, one connection (issue 12's floor)")
    say(f"\n== pg insert: {results.notes[-1]} ==")
    schema = pgbase.fresh_schema("insert")
    try:
        insert, close = postgres_plain(schema)
        try:
            insert()  # the table and the connection warmed up
            timings: list[int] = []
            for _ in range(calls):
                began = time.perf_counter_ns()
                insert()
                timings.append(time.perf_counter_ns() - began)
        finally:
            close()
        results.record("w2", f"plain INSERT + COMMIT ({calls:,})", Latency.of(timings))
    finally:
        pgbase.drop_schema(schema)
    return results
