"""A soak with retention on: the store's size stays flat.

Runs a real daemon (2 warm workers) with `[retention] succeeded = RETAIN` and the prune
pass every INTERVAL, submits JOBS no-op jobs in batches as fast as they finish, and prints
the database's size (file + WAL) and the jobs in it every few seconds. With `--no-retention`
the same run keeps everything (the store grows with every job).

    ./.venv/bin/python bench/retention_soak.py --jobs 200000 --retain 10s --interval 5s

`--mixed` makes every other job a `Say` for one of many customers: it prints (the store
keeps its output's tail, the `outputs` table) and its class has a rate per customer
(`limit_by`, never reached) whose starts are counted (the `starts` table), so that every
table a job touches is under the soak. It prints the rows of each table at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import sqlite3
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bgjobs_target import Daemon, Workspace
from bgjobs.model import JobSpec

BATCH = 200
"""Jobs per Submit; at most BACKLOG of them unfinished at any time."""
BACKLOG = 2000


def sizes_of(database: Path) -> tuple[int, int]:
    """Bytes of the database file and of its WAL."""
    wal = database.with_name(database.name + "-wal")
    return (
        database.stat().st_size if database.exists() else 0,
        wal.stat().st_size if wal.exists() else 0,
    )


def job_of(number: int, args: argparse.Namespace) -> JobSpec:
    if args.mixed and number % 2:
        customer = number // 2 % args.customers
        return JobSpec(class_name="Say", method="handle", params=[customer])
    return JobSpec(class_name="Noop", method="handle")


def rows_of(database: Path) -> dict[str, int]:
    """Rows of each table a job writes to (read-only, beside the running daemon)."""
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
        return {
            table: int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
            for table in ("jobs", "attempts", "outputs", "starts")
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200_000)
    parser.add_argument("--retain", default="10s", help="[retention] succeeded")
    parser.add_argument("--interval", default="5s", help="[retention] interval")
    parser.add_argument("--every", type=float, default=10.0, help="seconds between prints")
    parser.add_argument("--no-retention", action="store_true")
    parser.add_argument("--mixed", action="store_true", help="half printing, rate-limited jobs")
    parser.add_argument("--customers", type=int, default=50_000, help="with --mixed")
    args = parser.parse_args()

    workspace = Workspace("soak", workers=2)
    retain = "100d" if args.no_retention else args.retain
    with workspace.config.open("a") as config:
        config.write(f'\n[retention]\nsucceeded = "{retain}"\ninterval = "{args.interval}"\n')
        if args.mixed:
            config.write('\n[jobs.Say]\nrate_limit = "100000/s"\nlimit_by = 0\n')
    daemon = Daemon(workspace)
    try:
        daemon.wait_ready()
        client = workspace.client()
        started = time.monotonic()
        submitted = 0
        next_print = 0.0
        peak = peak_wal = 0
        latencies: list[float] = []
        print("seconds  submitted  finished  jobs-in-store  db-MiB  wal-MiB", flush=True)
        while True:
            stats = client.stats()
            counts = stats.counts
            live = counts["queued"] + counts["running"] + counts["scheduled"]
            size, wal = sizes_of(workspace.database)
            peak, peak_wal = max(peak, size), max(peak_wal, wal)
            now = time.monotonic() - started
            if now >= next_print or (submitted >= args.jobs and live == 0):
                stored = sum(counts.values())
                print(
                    f"{now:7.0f}  {submitted:9d}  {stats.finished_last_minute:>4d}/min  "
                    f"{stored:13d}  {size / 2**20:6.2f}  {wal / 2**20:7.2f}",
                    flush=True,
                )
                next_print = now + args.every
            if submitted >= args.jobs and live == 0:
                break
            if submitted < args.jobs and live < BACKLOG:
                count = min(BATCH, args.jobs - submitted)
                specs = [job_of(submitted + n, args) for n in range(count)]
                sent = time.perf_counter()
                client.submit(specs)
                latencies.append(time.perf_counter() - sent)
                submitted += count
            else:
                time.sleep(0.05)
        print(
            f"peak database file {peak / 2**20:.2f} MiB, WAL {peak_wal / 2**20:.2f} MiB, "
            f"after {submitted} jobs in {time.monotonic() - started:.0f} s"
        )
        client.close()
        print("rows:", rows_of(workspace.database))
        latencies.sort()
        print(
            f"submit of {BATCH} jobs: median {latencies[len(latencies) // 2] * 1000:.1f} ms, "
            f"p99 {latencies[len(latencies) * 99 // 100] * 1000:.1f} ms, "
            f"max {latencies[-1] * 1000:.0f} ms"
        )
        slow = [line for line in daemon.tail(10_000).splitlines() if "WAL took" in line]
        print(f"WAL truncations over 250 ms: {len(slow)}", *slow[:5], sep="\n  ")
    finally:
        daemon.stop()
        workspace.remove()
    return 0


if __name__ == "__main__":
    sys.exit(main())
