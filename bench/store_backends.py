"""SQLite and PostgreSQL side by side, store against store (no daemon): claims per second
with one claimer and with racing claimers (processes, each its own connection), and the
latency of a one-job submit with its commit beside a plain one-row INSERT + COMMIT into a
scratch table of the same database (the ratio issue 12 asks about).

    .venv/bin/python -m bench.store_backends [--jobs 3000] [--submits 500] [--claimers 4]

PostgreSQL: `$BGJOBS_STORE_DSN` (default the test server, 127.0.0.1:5432/test), in a
scratch schema dropped at the end. SQLite: a WAL database in a temporary directory, as the
daemon opens it (synchronous=NORMAL).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import psycopg
from psycopg import sql

from bgjobd.store.base import FinishedAttempt, NewJob, Store
from bgjobd.store.postgres import PostgresStore
from bgjobd.store.sqlite import SQLiteStore
from bgjobs.model import JobState, Outcome, Priority

DSN: Final = os.environ.get("BGJOBS_STORE_DSN", "postgresql://postgres@127.0.0.1:5432/test")
SCHEMA: Final = f"bgjobs_bench_{os.getpid()}"
Opener = Callable[[], Store]


def open_sqlite(path: str) -> Store:
    return SQLiteStore(Path(path))


def open_postgres(schema: str) -> Store:
    return PostgresStore(DSN, schema, application_name="bench")


def job() -> NewJob:
    now = time.time()
    return NewJob("Echo", "handle", [1, "x"], Priority.MEDIUM, JobState.QUEUED, now, 3, 30.0, now)


def fill(store: Store, count: int) -> None:
    for _ in range(count):
        store.add([job()])
    store.commit()


def claim_all(store: Store, owner: str) -> int:
    """Claim and finish jobs until none is left, one transaction each (the end of the job
    held and the next claim), as a node's loop makes them; returns the claims."""
    claims = 0
    held = None
    while True:
        if held is not None:
            end = FinishedAttempt(1, Outcome.SUCCEEDED, time.time(), 0.0, owner=owner)
            store.finish_attempt(held.id, end, JobState.SUCCEEDED)
        held = store.claim_next(owner, 1, time.time(), {})
        store.commit()
        if held is None:
            return claims
        claims += 1


def _racer(opener: Callable[[str], Store], where: str, owner: str, gate: Any) -> None:
    store = opener(where)
    try:
        gate.wait()
        claim_all(store, owner)
    finally:
        store.close()


def claims_per_second(
    opener: Callable[[str], Store], where: str, jobs: int, claimers: int
) -> float:
    store = opener(where)
    fill(store, jobs)
    if claimers == 1:
        started = time.perf_counter()
        claimed = claim_all(store, "solo")
        elapsed = time.perf_counter() - started
        store.close()
        assert claimed == jobs
        return jobs / elapsed
    context = multiprocessing.get_context("spawn")
    gate = context.Barrier(claimers + 1)
    racers = [
        context.Process(target=_racer, args=(opener, where, f"racer-{n}", gate))
        for n in range(claimers)
    ]
    for racer in racers:
        racer.start()
    gate.wait()
    started = time.perf_counter()
    for racer in racers:
        racer.join()
    elapsed = time.perf_counter() - started
    assert store.counts()[JobState.SUCCEEDED] >= jobs
    store.close()
    return jobs / elapsed


def latencies(
    store: Store, insert: Callable[[], None], count: int
) -> tuple[list[float], list[float]]:
    """Seconds per one-job submit with its commit, and per plain one-row INSERT + COMMIT,
    taken in turns so that both meet the same disk and the same neighbours."""
    submits, plain = [], []
    for _ in range(count):
        started = time.perf_counter()
        store.add([job()])
        store.commit()
        submits.append(time.perf_counter() - started)
        started = time.perf_counter()
        insert()
        plain.append(time.perf_counter() - started)
    return submits, plain


def sqlite_plain(path: str) -> tuple[Callable[[], None], Callable[[], None]]:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = NORMAL")
    db.execute("CREATE TABLE IF NOT EXISTS scratch (id INTEGER PRIMARY KEY, v BLOB)")

    def insert() -> None:
        db.execute("BEGIN IMMEDIATE")
        db.execute("INSERT INTO scratch (v) VALUES (?)", (b"\x92\x01\xa1x",))
        db.execute("COMMIT")

    return insert, db.close


def postgres_plain(schema: str) -> tuple[Callable[[], None], Callable[[], None]]:
    db = psycopg.connect(DSN, autocommit=True)
    db.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
    db.execute(
        "CREATE TABLE IF NOT EXISTS scratch (id BIGINT GENERATED ALWAYS AS IDENTITY, v BYTEA)"
    )

    def insert() -> None:
        db.execute("BEGIN")
        db.execute("INSERT INTO scratch (v) VALUES (%s)", (b"\x92\x01\xa1x",))
        db.execute("COMMIT")

    return insert, db.close


def ms(values: list[float], quantile: float) -> float:
    return statistics.quantiles(values, n=100)[int(quantile * 100) - 1] * 1000


def without_notices(schema: str) -> None:
    """The schema's stores made, less the trigger of change notices (`--no-notify`)."""
    open_postgres(schema).close()
    with psycopg.connect(DSN, autocommit=True) as db:
        jobs = sql.Identifier(schema, "jobs")
        db.execute(sql.SQL("DROP TRIGGER jobs_changed ON {}").format(jobs))


def run_backend(name: str, args: argparse.Namespace, where: Callable[[str], str]) -> dict[str, str]:
    opener = open_sqlite if name == "sqlite" else open_postgres
    if name == "postgresql" and args.no_notify:
        for part in ("solo", "race", "submit"):
            without_notices(where(part))
    figures = {
        "claims/s, 1 claimer": f"{claims_per_second(opener, where('solo'), args.jobs, 1):.0f}",
        f"claims/s, {args.claimers} claimers": (
            f"{claims_per_second(opener, where('race'), args.jobs, args.claimers):.0f}"
        ),
    }
    store = opener(where("submit"))
    insert, close = (sqlite_plain if name == "sqlite" else postgres_plain)(where("submit"))
    submits, plain = latencies(store, insert, args.submits)
    close()
    store.close()
    figures["submit+commit p50 ms"] = f"{ms(submits, 0.5):.3f}"
    figures["submit+commit p99 ms"] = f"{ms(submits, 0.99):.3f}"
    figures["plain INSERT+COMMIT p50 ms"] = f"{ms(plain, 0.5):.3f}"
    figures["plain INSERT+COMMIT p99 ms"] = f"{ms(plain, 0.99):.3f}"
    figures["submit p50 / plain p50"] = f"{ms(submits, 0.5) / ms(plain, 0.5):.2f}"
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=3000)
    parser.add_argument("--submits", type=int, default=500)
    parser.add_argument("--claimers", type=int, default=4)
    parser.add_argument(
        "--no-notify",
        action="store_true",
        help="PostgreSQL without its change notices (what LISTEN/NOTIFY costs)",
    )
    args = parser.parse_args()
    results: dict[str, dict[str, str]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        results["sqlite"] = run_backend("sqlite", args, lambda part: f"{tmp}/{part}.db")
    try:
        results["postgresql"] = run_backend("postgresql", args, lambda part: f"{SCHEMA}_{part}")
    finally:
        with psycopg.connect(DSN, autocommit=True) as db:
            for part in ("solo", "race", "submit"):
                name = sql.Identifier(f"{SCHEMA}_{part}")
                db.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(name))
    width = max(len(key) for key in results["sqlite"])
    print(f"{'':{width}}  {'sqlite':>10}  {'postgresql':>10}")
    for key in results["sqlite"]:
        print(f"{key:{width}}  {results['sqlite'][key]:>10}  {results['postgresql'][key]:>10}")


if __name__ == "__main__":
    main()
