"""W6: the daemon's start-up time and memory with 1,000,000 scheduled jobs in its store.

The database is made the quick way: the daemon starts once to create the schema (so the
schema is whatever bgjobd/store/schema.sql says today), stops, and then one transaction
inserts the rows with the columns `SQLiteStore.add` writes, params msgpack-encoded with
msgspec. The per-row `count_insert` trigger would triple the insert time, so it is dropped
for the insert and re-created from its own stored SQL, and `state_counts` gets the total:
the schema and the counts end exactly as a million submits would leave them.
"""

from __future__ import annotations

import socket
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import msgspec

from bench import procs
from bench.bgjobs_target import BgjobsTarget, Daemon, Workspace
from bench.workloads import Counters, Latency, w2_submit_latency

FAR_FUTURE = 30 * 86400.0
"""Due in a month: none of them comes due while the benchmark runs."""


@dataclass
class MillionResult:
    rows: int
    insert_seconds: float
    database_mib: float
    empty_startup: float
    startup: float
    daemon_at_ready: procs.Memory
    tree_at_ready: procs.Memory
    tree_idle: procs.Memory
    submit: Latency | None
    stop_seconds: float | None


def _rows(count: int, owner: str) -> Iterator[tuple[Any, ...]]:
    encode = msgspec.msgpack.Encoder().encode
    now = time.time()
    first = now + FAR_FUTURE
    for i in range(count):
        # Distinct due times a millisecond apart, as a real backlog would have.
        yield (
            "Noop",
            "handle",
            encode([i]),
            1,
            "scheduled",
            first + i / 1000,
            1,
            120.0,
            now,
            owner,
        )


def fill(workspace: Workspace, count: int) -> float:
    """Insert `count` scheduled jobs in one transaction; returns the seconds it took."""
    owner = f"bgjobd@{socket.gethostname()}"  # the daemon's own name, as its submits write
    started = time.perf_counter()
    db = sqlite3.connect(workspace.database, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")
        db.execute("BEGIN IMMEDIATE")
        (trigger,) = db.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = 'count_insert'"
        ).fetchone()
        db.execute("DROP TRIGGER count_insert")
        db.executemany(
            "INSERT INTO jobs (class_name, method, params, priority, state, run_at, "
            "max_attempts, timeout, created_at, owner) VALUES (?,?,?,?,?,?,?,?,?,?)",
            _rows(count, owner),
        )
        db.execute("UPDATE state_counts SET count = count + ? WHERE state = 'scheduled'", (count,))
        db.execute(trigger)
        db.execute("COMMIT")
    finally:
        db.close()  # the last connection checkpoints the WAL into the database
    return time.perf_counter() - started


def run(counters: Counters, rows: int, idle: float, submit_calls: int) -> MillionResult:
    workspace = Workspace("million")
    try:
        first = Daemon(workspace)
        try:
            empty_startup = first.wait_ready()
        finally:
            first.stop()
        insert_seconds = fill(workspace, rows)
        database_mib = workspace.database.stat().st_size / 2**20
        daemon = Daemon(workspace)
        target: BgjobsTarget | None = None
        try:
            startup = daemon.wait_ready(timeout=120)
            daemon_at_ready = procs.memory([daemon.pid])
            tree_at_ready = procs.memory(procs.tree(daemon.pid))
            time.sleep(idle)
            tree_idle = procs.memory(procs.tree(daemon.pid))
            target = BgjobsTarget(daemon, "bgjobs (1M scheduled)")
            submit = w2_submit_latency(target, counters, submit_calls) if submit_calls else None
        finally:
            if target is not None:
                target.close()
            stop_seconds = daemon.stop()
        return MillionResult(
            rows,
            insert_seconds,
            database_mib,
            empty_startup,
            startup,
            daemon_at_ready,
            tree_at_ready,
            tree_idle,
            submit,
            stop_seconds,
        )
    finally:
        workspace.remove()
