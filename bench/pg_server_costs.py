"""What the PostgreSQL server spends on one job's statements, and on what the schema adds to
them: the state-count triggers, and the change notices with nodes listening.

    python -m bench.pg_server_costs [--jobs 3000] [--rounds 5] [--dsn DSN]

`counts`: one connection runs each job's three statements as a node runs them (the submit's
INSERT, the claim's UPDATE, the end's UPDATE, each committed; `synchronous_commit = off`, so
that the disk's flushes do not hide the CPU), on the store's own schema (`base`) and on
copies without its count triggers (`no count triggers`), with triggers that write nothing
(`empty count triggers`: what calling them costs), and with `state_counts` unlogged. Per
job: the CPU of that connection's server process (read from /proc, so on this host only)
and the wall time.

`notices`: a one-row INSERT committed on its own into a table whose statement trigger sends
a notice (as a submit's does), with 0 and 3 other connections listening on the channel, and
without the trigger; per insert: the CPU of all the server's processes and the p50 wall time.

Variants take turns round after round; the figures are medians over the rounds. Each
round's schema is made fresh and dropped at the end.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import time
import uuid
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import sql

from bgjobd.store import postgres
from bgjobd.store.rows import COLUMNS

DSN = "postgresql://postgres@127.0.0.1:5432/test"
COUNT_VARIANTS = ("base", "no count triggers", "empty count triggers", "unlogged counts")
NOTICE_VARIANTS = ("no notice", "notice, 0 listening", "notice, 3 listening")
WARM_UP = 300
_INSERT = (
    "INSERT INTO jobs (class_name, method, params, priority, state, run_at, max_attempts, "
    "timeout, created_at) VALUES ('Noop', 'handle', %s, 1, 'queued', %s, 1, 60, %s)"
)
_END = (
    "UPDATE jobs SET state = 'succeeded', result = NULL, finished_at = %s, outcome = "
    f"'succeeded' WHERE id = %s AND state = 'running' AND owner = %s RETURNING {COLUMNS}"
)


def process_cpu(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def server_pids() -> list[int]:
    found = subprocess.run(["pgrep", "-x", "postgres"], check=False, capture_output=True, text=True)
    return [int(pid) for pid in found.stdout.split()]


def fresh_schema(dsn: str, label: str) -> str:
    schema = f"bgb_{label}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(dsn, autocommit=True) as db:
        db.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    return schema


def drop_schema(dsn: str, schema: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as db:
        db.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def connect_in(dsn: str, schema: str) -> psycopg.Connection[Any]:
    db = psycopg.connect(dsn, autocommit=True)
    db.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
    return db


def store_schema(db: psycopg.Connection[Any], variant: str) -> None:
    """The store's tables, changed as the variant says."""
    db.execute(postgres.SCHEMA.read_text())
    if variant == "no count triggers":
        for trigger in ("count_insert", "count_update", "count_delete"):
            db.execute(sql.SQL("DROP TRIGGER {} ON jobs").format(sql.Identifier(trigger)))
    elif variant == "empty count triggers":
        for function in ("count_insert", "count_update", "count_delete"):
            db.execute(
                sql.SQL(
                    "CREATE OR REPLACE FUNCTION {}() RETURNS trigger LANGUAGE plpgsql "
                    "AS $$ BEGIN RETURN NULL; END $$"
                ).format(sql.Identifier(function))
            )
    elif variant == "unlogged counts":
        db.execute("ALTER TABLE state_counts SET UNLOGGED")


def job_cycles(dsn: str, variant: str, jobs: int) -> tuple[float, float]:
    """(server CPU µs, wall µs) per job: insert, claim, end, each committed."""
    schema = fresh_schema(dsn, "costs")
    try:
        db = connect_in(dsn, schema)
        try:
            store_schema(db, variant)
            db.execute("SET synchronous_commit = off")
            backend = [db.info.backend_pid]

            def cycle() -> None:
                now = time.time()
                db.execute(_INSERT, (b"\x90", now, now), prepare=True)
                claimed = db.execute(
                    postgres._CLAIM_ONE, (now, 4321, "node1", "default"), prepare=True
                ).fetchone()
                assert claimed is not None
                db.execute(_END, (now, claimed[0], "node1"), prepare=True)

            return _timed(cycle, jobs, backend)
        finally:
            db.close()
    finally:
        drop_schema(dsn, schema)


def notified_inserts(dsn: str, variant: str, inserts: int) -> tuple[float, float]:
    """(server CPU µs of all its processes, p50 wall µs) per committed one-row INSERT."""
    schema = fresh_schema(dsn, "notices")
    listeners: list[psycopg.Connection[Any]] = []
    try:
        db = connect_in(dsn, schema)
        try:
            db.execute(
                "CREATE TABLE t (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, v TEXT)"
            )
            channel = sql.Identifier(schema)
            if variant != "no notice":
                db.execute(
                    "CREATE FUNCTION notify() RETURNS trigger LANGUAGE plpgsql AS "
                    "$$ BEGIN PERFORM pg_notify(TG_TABLE_SCHEMA, ''); RETURN NULL; END $$"
                )
                db.execute(
                    "CREATE TRIGGER notify AFTER INSERT ON t "
                    "FOR EACH STATEMENT EXECUTE FUNCTION notify()"
                )
            if variant == "notice, 3 listening":
                for _ in range(3):
                    listener = connect_in(dsn, schema)
                    listener.execute(sql.SQL("LISTEN {}").format(channel))
                    listeners.append(listener)
            timings: list[float] = []

            def insert() -> None:
                began = time.perf_counter()
                db.execute("INSERT INTO t (v) VALUES ('x')", prepare=True)
                timings.append(time.perf_counter() - began)
                if len(timings) % 50 == 0:
                    for listener in listeners:  # what a node does with its notices: read them
                        for _ in listener.notifies(timeout=0):
                            pass

            cpu, _ = _timed(insert, inserts, None)
            return cpu, statistics.median(timings[WARM_UP:]) * 1e6
        finally:
            db.close()
    finally:
        for listener in listeners:
            listener.close()
        drop_schema(dsn, schema)


def _timed(work: Callable[[], None], count: int, pids: list[int] | None) -> tuple[float, float]:
    for _ in range(WARM_UP):
        work()
    watched = pids if pids is not None else server_pids()
    cpu_before, started = process_cpu(watched), time.perf_counter()
    for _ in range(count):
        work()
    elapsed = time.perf_counter() - started
    cpu = process_cpu(watched) - cpu_before
    return cpu / count * 1e6, elapsed / count * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--dsn", default=DSN)
    parser.add_argument("--only", choices=("counts", "notices"), default=None)
    args = parser.parse_args()
    measures: list[tuple[str, tuple[str, ...], Callable[[str, str, int], tuple[float, float]]]] = [
        ("counts", COUNT_VARIANTS, job_cycles),
        ("notices", NOTICE_VARIANTS, notified_inserts),
    ]
    for name, variants, measure in measures:
        if args.only not in (None, name):
            continue
        found: dict[str, list[tuple[float, float]]] = {variant: [] for variant in variants}
        for _ in range(args.rounds):
            for variant in variants:
                found[variant].append(measure(args.dsn, variant, args.jobs))
        first = statistics.median(cpu for cpu, _ in found[variants[0]])
        print(f"{name}: medians of {args.rounds} rounds, {args.jobs:,} each")
        for variant in variants:
            cpu = statistics.median(value for value, _ in found[variant])
            wall = statistics.median(value for _, value in found[variant])
            print(
                f"  {variant:22s} server CPU {cpu:6.0f} µs ({cpu / first:4.2f}x)"
                f"   wall {wall:6.0f} µs"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
