"""The PostgreSQL driver, chosen by measurement: psycopg 3 (the store's) against asyncpg, on
the statement shapes the daemon runs, one connection each, interleaved rounds.

    python -m bench.pg_drivers [--ops 2000] [--rounds 3] [--dsn DSN]

For each operation and driver: the median wall time per operation (µs) and the client's
CPU per operation (µs, what the daemon's one thread pays). Operations, on a scratch table
with an index (a schema of its own, dropped at the end):
- `round trip`: `SELECT 1`;
- `insert, committed`: a one-row INSERT ... RETURNING outside a transaction (a submit);
- `update, committed`: a one-row UPDATE ... RETURNING outside a transaction;
- `end + claim, one transaction`: BEGIN, two one-row UPDATEs, COMMIT (an attempt's end and
  the next claim); psycopg also in its pipeline mode (one round trip for all four).
psycopg runs blocking (as the store does), asyncpg on a uvloop event loop (its only mode).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable

import asyncpg  # type: ignore[import-untyped]
import psycopg
import uvloop
from psycopg import sql

DSN = "postgresql://postgres@127.0.0.1:5432/test"
ROWS = 10_000
PAYLOAD = b"\x92\xa4done\x01" * 4


def _setup(dsn: str, schema: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as db:
        name = sql.Identifier(schema)
        db.execute(sql.SQL("CREATE SCHEMA {}").format(name))
        db.execute(sql.SQL("SET search_path TO {}").format(name))
        db.execute(
            "CREATE TABLE t (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
            "state TEXT NOT NULL, payload BYTEA, at DOUBLE PRECISION NOT NULL)"
        )
        db.execute("CREATE INDEX t_by_state ON t (state, id)")
        db.execute(
            "INSERT INTO t (state, at) SELECT 'queued', 0 FROM generate_series(1, %s)", (ROWS,)
        )


def _measure(ops: int, run: Callable[[int], None]) -> tuple[float, float]:
    """(wall µs, client CPU µs) per operation."""
    cpu, wall = time.process_time(), time.perf_counter()
    for number in range(ops):
        run(number)
    return (time.perf_counter() - wall) / ops * 1e6, (time.process_time() - cpu) / ops * 1e6


async def _measure_async(ops: int, run: Callable[[int], Awaitable[None]]) -> tuple[float, float]:
    cpu, wall = time.process_time(), time.perf_counter()
    for number in range(ops):
        await run(number)
    return (time.perf_counter() - wall) / ops * 1e6, (time.process_time() - cpu) / ops * 1e6


def _row(number: int) -> int:
    return number % ROWS + 1


def psycopg_round(dsn: str, schema: str, ops: int) -> dict[str, tuple[float, float]]:
    with psycopg.connect(dsn, autocommit=True, options=f"-c search_path={schema}") as db:
        update = "UPDATE t SET state = %s, payload = %s, at = %s WHERE id = %s RETURNING id"

        def round_trip(_: int) -> None:
            db.execute("SELECT 1").fetchone()

        def insert(_: int) -> None:
            db.execute(
                "INSERT INTO t (state, payload, at) VALUES (%s, %s, %s) RETURNING id",
                ("queued", PAYLOAD, time.time()),
            ).fetchone()

        def update_one(number: int) -> None:
            db.execute(update, ("done", PAYLOAD, time.time(), _row(number))).fetchone()

        def transaction(number: int) -> None:
            db.execute("BEGIN")
            db.execute(update, ("done", PAYLOAD, time.time(), _row(number))).fetchone()
            db.execute(update, ("running", None, time.time(), _row(number + 1))).fetchone()
            db.execute("COMMIT")

        def pipelined(number: int) -> None:
            with db.pipeline():
                db.execute("BEGIN")
                end = db.execute(update, ("done", PAYLOAD, time.time(), _row(number)))
                claim = db.execute(update, ("running", None, time.time(), _row(number + 1)))
                db.execute("COMMIT")
            end.fetchone()
            claim.fetchone()

        for warm in range(20):  # past psycopg's prepare threshold
            for operation in (round_trip, update_one, transaction, pipelined):
                operation(warm)
        return {
            "round trip": _measure(ops, round_trip),
            "insert, committed": _measure(ops, insert),
            "update, committed": _measure(ops, update_one),
            "end + claim, one transaction": _measure(ops, transaction),
            "end + claim, pipelined": _measure(ops, pipelined),
        }


async def _asyncpg_round(dsn: str, schema: str, ops: int) -> dict[str, tuple[float, float]]:
    db = await asyncpg.connect(dsn, server_settings={"search_path": schema})
    try:
        update = "UPDATE t SET state = $1, payload = $2, at = $3 WHERE id = $4 RETURNING id"

        async def round_trip(_: int) -> None:
            await db.fetchval("SELECT 1")

        async def insert(_: int) -> None:
            await db.fetchval(
                "INSERT INTO t (state, payload, at) VALUES ($1, $2, $3) RETURNING id",
                "queued",
                PAYLOAD,
                time.time(),
            )

        async def update_one(number: int) -> None:
            await db.fetchval(update, "done", PAYLOAD, time.time(), _row(number))

        async def transaction(number: int) -> None:
            async with db.transaction():
                await db.fetchval(update, "done", PAYLOAD, time.time(), _row(number))
                await db.fetchval(update, "running", None, time.time(), _row(number + 1))

        for warm in range(20):
            await round_trip(warm)
            await update_one(warm)
            await transaction(warm)
        return {
            "round trip": await _measure_async(ops, round_trip),
            "insert, committed": await _measure_async(ops, insert),
            "update, committed": await _measure_async(ops, update_one),
            "end + claim, one transaction": await _measure_async(ops, transaction),
        }
    finally:
        await db.close()


def asyncpg_round(dsn: str, schema: str, ops: int) -> dict[str, tuple[float, float]]:
    return uvloop.run(_asyncpg_round(dsn, schema, ops))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ops", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dsn", default=DSN)
    args = parser.parse_args()
    schema = f"bench_drivers_{uuid.uuid4().hex[:8]}"
    _setup(args.dsn, schema)
    drivers = {"psycopg": psycopg_round, "asyncpg": asyncpg_round}
    figures: dict[tuple[str, str], list[tuple[float, float]]] = {}
    try:
        for number in range(args.rounds):
            order = list(drivers) if number % 2 == 0 else list(reversed(drivers))
            for driver in order:
                for operation, figure in drivers[driver](args.dsn, schema, args.ops).items():
                    figures.setdefault((operation, driver), []).append(figure)
    finally:
        with psycopg.connect(args.dsn, autocommit=True) as db:
            db.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
    print(f"PostgreSQL drivers, {args.ops} operations per round, medians of {args.rounds}:")
    print(f"{'operation':32} {'driver':8} {'wall µs':>8} {'client CPU µs':>14}")
    for (operation, driver), rounds in figures.items():
        wall = statistics.median(figure[0] for figure in rounds)
        cpu = statistics.median(figure[1] for figure in rounds)
        print(f"{operation:32} {driver:8} {wall:8.0f} {cpu:14.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
