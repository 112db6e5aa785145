"""How soon an idle PostgreSQL node starts a job it did not submit itself.

    python -m bench.pg_pickup [--jobs 60] [--daemon-code DIR]

One bgjobs node on a fresh PostgreSQL schema, idle; an application's connection enqueues a
job in its own transaction (`enqueue_in`), one at a time, after a random pause of 0-100 ms
(so the pauses fall anywhere in a poll's period, if the node polls). The job (`Late`) writes
how long after the moment just before the COMMIT it started; so each figure is the commit,
the node learning of it, its claim and the hand-over to a warm worker. Prints p50, p99 and
max in ms. `--daemon-code` runs the node from another checkout (e.g. the revision before a
change), the client staying this one's.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
import uuid
from pathlib import Path

import psycopg
from psycopg import sql

from bench.bgjobs_target import Daemon
from bench.cluster_target import node_workspaces, postgres_store, start_nodes
from bgjobctl import enqueue_in

DSN = "postgresql://postgres@127.0.0.1:5432/test"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=60)
    parser.add_argument("--dsn", default=DSN)
    parser.add_argument("--daemon-code", type=Path, default=None)
    args = parser.parse_args()
    if args.daemon_code is not None:
        Daemon.default_code = args.daemon_code.resolve()
    schema = f"bgb_pickup_{uuid.uuid4().hex[:10]}"
    (workspace,) = node_workspaces(1, workers=2, store=postgres_store(args.dsn, schema))
    daemons = start_nodes([workspace])
    latencies: list[float] = []
    try:
        results = workspace.root / "late.txt"
        results.touch()
        config = str(workspace.config)
        with psycopg.connect(args.dsn) as app:
            for count in range(1, args.jobs + 1):
                time.sleep(random.uniform(0.0, 0.1))
                with app.transaction():
                    enqueue_in(app, "Late", "handle", [str(results), time.time()], config=config)
                deadline = time.monotonic() + 30
                while len(lines := results.read_text().split()) < count:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"job {count} did not start in 30 s")
                    time.sleep(0.001)
            latencies = sorted(float(line) * 1000 for line in lines)
    finally:
        for daemon in daemons:
            daemon.stop()
        workspace.remove()
        with psycopg.connect(args.dsn, autocommit=True) as db:
            db.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
    code = "this checkout" if args.daemon_code is None else str(args.daemon_code)
    p99 = latencies[min(len(latencies) - 1, round(0.99 * (len(latencies) - 1)))]
    print(
        f"idle node ({code}): commit to start of {len(latencies)} jobs enqueued in the "
        f"application's transaction: p50 {statistics.median(latencies):.1f} ms, "
        f"p99 {p99:.1f} ms, max {latencies[-1]:.1f} ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
