"""What one job costs on a PostgreSQL node, process by process, and which statements it runs.

    python -m bench.pg_costs [--jobs 3000] [--nodes 1] [--daemon-code DIR] [--server-log PATH]

One node (or `--nodes`, each with 2 warm workers) on a fresh schema; after a warm-up,
`--jobs` no-op jobs submitted one call at a time by one client, round robin over the nodes
(W1's shape). Prints jobs/s and the CPU per job of the
daemon, its workers, the PostgreSQL server's processes (all of them: run it on a quiet
machine) and the client, read from /proc. With the server's log readable (`--server-log`;
Debian's path by default), the node's connection logs every statement it runs
(`log_min_duration_statement = 0`, set for that connection only: needs a superuser) and
the statements per job are printed by text, with their mean time in the server. The CPU
figures are what bounds a 2-core machine: their sum is the CPU one job takes.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg
from psycopg import sql

from bench import procs
from bench.bgjobs_target import BgjobsTarget, Daemon
from bench.cluster_target import ClusterTarget, node_workspaces, postgres_store, start_nodes

DSN = "postgresql://postgres@127.0.0.1:5432/test"
SERVER_LOG = Path("/var/log/postgresql/postgresql-15-main.log")
LOG_EVERY_STATEMENT = "options=-c%20log_min_duration_statement%3D0"
WARM_UP = 50
_EXECUTED = re.compile(r"duration: ([\d.]+) ms\s+(?:statement|execute [^:]*):\s*(.*)")


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def server_pids() -> list[int]:
    found = subprocess.run(["pgrep", "-x", "postgres"], check=False, capture_output=True, text=True)
    return [int(pid) for pid in found.stdout.split()]


def wait_finished(target: BgjobsTarget, count: int) -> None:
    deadline = time.monotonic() + 300
    while (target.finished() or (0, 0))[0] < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{count} jobs did not finish in 300 s")
        time.sleep(0.02)  # a stats call costs the node statements: not too often


def statements(lines: list[str], jobs: int) -> None:
    """The statements the log shows executed, per job, most frequent first."""
    counts: collections.Counter[str] = collections.Counter()
    server_ms: dict[str, float] = collections.defaultdict(float)
    for line in lines:
        if (match := _EXECUTED.search(line)) is None:
            continue
        text = re.sub(r"\s+", " ", match.group(2))
        text = re.sub(r"\$\d+|\b\d+(\.\d+)?\b", "N", text)[:100]
        counts[text] += 1
        server_ms[text] += float(match.group(1))
    total = sum(counts.values())
    print(f"statements: {total / jobs:.2f} per job")
    for text, count in counts.most_common(12):
        print(f"  {count / jobs:5.2f}/job  {server_ms[text] / count * 1000:6.0f} µs  {text}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=3000)
    parser.add_argument("--nodes", type=int, default=1)
    parser.add_argument("--dsn", default=DSN)
    parser.add_argument("--daemon-code", type=Path, default=None)
    parser.add_argument("--server-log", type=Path, default=SERVER_LOG)
    args = parser.parse_args()
    if args.daemon_code is not None:
        Daemon.default_code = args.daemon_code.resolve()
    logged = os.access(args.server_log, os.R_OK)
    joint = "&" if "?" in args.dsn else "?"
    dsn = f"{args.dsn}{joint}{LOG_EVERY_STATEMENT}" if logged else args.dsn
    schema = f"bgb_costs_{uuid.uuid4().hex[:10]}"
    workspaces = node_workspaces(args.nodes, workers=2, store=postgres_store(dsn, schema))
    nodes = start_nodes(workspaces)
    lines: list[str] = []
    try:
        target: BgjobsTarget = (
            ClusterTarget(nodes, "nodes") if args.nodes > 1 else BgjobsTarget(nodes[0])
        )
        for _ in range(WARM_UP):
            target.noop()
        wait_finished(target, WARM_UP)
        daemons = [node.pid for node in nodes]
        workers = [pid for node in nodes for pid in procs.tree(node.pid)[1:]]
        server = server_pids()
        log_from = args.server_log.stat().st_size if logged else 0
        before = (cpu_seconds(daemons), cpu_seconds(workers), cpu_seconds(server))
        client_before = time.process_time()
        started = time.perf_counter()
        for _ in range(args.jobs):
            target.noop()
        wait_finished(target, WARM_UP + args.jobs)
        elapsed = time.perf_counter() - started
        client = time.process_time() - client_before
        after = (cpu_seconds(daemons), cpu_seconds(workers), cpu_seconds(server))
        if logged:
            time.sleep(0.2)  # the server's log writer catches up
            with args.server_log.open(errors="replace") as log:
                log.seek(log_from)
                lines = log.read().splitlines()
        target.close()
    finally:
        for node in nodes:
            node.stop()
        for workspace in workspaces:
            workspace.remove()
        with psycopg.connect(args.dsn, autocommit=True) as db:
            db.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
    per_job = [(end - start) / args.jobs * 1e6 for start, end in zip(before, after, strict=True)]
    client_per_job = client / args.jobs * 1e6
    code = "this checkout" if args.daemon_code is None else str(args.daemon_code)
    print(f"{args.nodes} PostgreSQL node(s) ({code}), {args.jobs} no-op jobs one call at a time:")
    print(f"  {args.jobs / elapsed:,.0f} jobs/s")
    print(
        f"  CPU per job: daemons {per_job[0]:.0f} µs, workers {per_job[1]:.0f} µs, PostgreSQL "
        f"{per_job[2]:.0f} µs, client {client_per_job:.0f} µs; "
        f"together {sum(per_job) + client_per_job:,.0f} µs"
    )
    if logged:
        statements(lines, args.jobs)
    else:
        print(f"  (statements not counted: {args.server_log} is not readable)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
