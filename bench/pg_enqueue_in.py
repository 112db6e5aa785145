"""What a transactional enqueue adds to an application's commit on PostgreSQL.

    python -m bench.pg_enqueue_in [--dsn DSN] [--rounds 3] [--commits 2000]

Interleaved, on one connection: the median of `INSERT one row; COMMIT` and of `INSERT one
row; enqueue_in(...); COMMIT` (the row in a real table, so both commits write WAL), per
round; and the Python work of building the job's rows. Uses (and drops) its own schema.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import timeit
from pathlib import Path

import psycopg
import tomli_w
from psycopg import sql

from bgjobctl import enqueue_in
from bgjobctl.transactional import _rows
from bgjobd.store.postgres import PostgresStore
from bgjobs.config import Config, load_config

SCHEMA = "bench_enqueue_in"


def config_for(dsn: str, directory: Path) -> Config:
    path = directory / "bgjobs.toml"
    settings = {
        "allowed_jobs": {"Echo": ["handle"]},
        "store": {"backend": "postgresql", "dsn": dsn, "schema": SCHEMA},
    }
    path.write_bytes(tomli_w.dumps(settings).encode())
    return load_config(str(path))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--commits", type=int, default=2000)
    args = parser.parse_args()
    PostgresStore(args.dsn, SCHEMA).close()
    table = sql.Identifier(SCHEMA, "orders")
    insert = sql.SQL("INSERT INTO {} (title) VALUES (%s)").format(table)
    try:
        with tempfile.TemporaryDirectory() as directory:
            config = config_for(args.dsn, Path(directory))
            with psycopg.connect(args.dsn) as app:
                app.execute(sql.SQL("CREATE TABLE {} (id serial, title text)").format(table))
                app.commit()
                for number in range(1, args.rounds + 1):
                    plain, with_job = [], []
                    for n in range(args.commits):
                        started = time.perf_counter()
                        app.execute(insert, ("order",))
                        app.commit()
                        plain.append(time.perf_counter() - started)
                        started = time.perf_counter()
                        app.execute(insert, ("order",))
                        enqueue_in(app, "Echo", "handle", [n], config=config)
                        app.commit()
                        with_job.append(time.perf_counter() - started)
                    print(
                        f"round {number}: INSERT+COMMIT p50 "
                        f"{statistics.median(plain) * 1e6:.0f} us; INSERT+enqueue_in+COMMIT "
                        f"p50 {statistics.median(with_job) * 1e6:.0f} us"
                    )
            count = 5000
            spent = timeit.timeit(
                lambda: _rows(
                    config,
                    "Echo",
                    "handle",
                    [1],
                    0,
                    priority=None,
                    at=None,
                    then=(),
                    key=None,
                    queue=None,
                ),
                number=count,
            )
            print(f"building a job's rows (Python): {spent / count * 1e6:.1f} us")
    finally:
        with psycopg.connect(args.dsn, autocommit=True) as db:
            db.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(SCHEMA)))


if __name__ == "__main__":
    main()
