"""A bulk enqueue: how many jobs a second `run_background_jobs()` gets acknowledged
(issue 14's aim: 100,000 jobs at >= 50,000 jobs/s), beside one `run_background_job()` call
per job for the same jobs, in one run.

    .venv/bin/python bench/bulk_enqueue.py                  # 100,000 jobs, 3 rounds
    .venv/bin/python bench/bulk_enqueue.py --jobs 20000 --rounds 5

Each round starts a fresh daemon (the benchmark's workspace: 2 workers, fsync off) and
submits the jobs due in an hour, so that only the submit path runs: first in bulk (requests
of `bgjobctl.many.JOBS_PER_REQUEST` jobs), then, for the ratio, one call per job (at most
10,000 of them, the rate extrapolated). Medians over the rounds.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

REPO: Final = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench import procs  # noqa: E402
from bench.bgjobs_target import Daemon, Workspace  # noqa: E402
from bgjobctl.library import close_clients, run_background_job  # noqa: E402
from bgjobctl.many import run_background_jobs  # noqa: E402

LATER: Final = 3600.0
ONE_BY_ONE_MAX: Final = 10_000
AIM: Final = 50_000.0


@dataclass
class Round:
    bulk: float
    """Jobs acknowledged per second in bulk."""
    single: float
    """Jobs per second, one call per job."""
    client_us: float
    """The calling process's CPU per job in bulk, µs."""
    daemon_us: float
    """The daemon's CPU per job in bulk, µs (what a loaded machine blurs least)."""


def one_round(jobs: int) -> Round:
    """The figures of one round, against a fresh daemon."""
    workspace = Workspace("bulk")
    daemon = Daemon(workspace)
    try:
        daemon.wait_ready()
        config = str(workspace.config)
        run_background_jobs([("Noop", "handle")] * 100, LATER, config=config, fallback="error")
        daemon_cpu, client_cpu = sum(procs.cpu_seconds(daemon.pid)), time.process_time()
        started = time.perf_counter()
        handles = run_background_jobs(
            (("Noop", "handle", [n]) for n in range(jobs)), LATER, config=config, fallback="error"
        )
        bulk = len(handles) / (time.perf_counter() - started)
        client_us = (time.process_time() - client_cpu) / jobs * 1e6
        daemon_us = (sum(procs.cpu_seconds(daemon.pid)) - daemon_cpu) / jobs * 1e6
        single = min(jobs, ONE_BY_ONE_MAX)
        started = time.perf_counter()
        for n in range(single):
            run_background_job("Noop", "handle", [n], LATER, config=config, fallback="error")
        return Round(bulk, single / (time.perf_counter() - started), client_us, daemon_us)
    finally:
        close_clients()
        daemon.stop()
        workspace.remove()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rounds: list[Round] = []
    for number in range(1, args.rounds + 1):
        done = one_round(args.jobs)
        rounds.append(done)
        print(
            f"round {number}: bulk {done.bulk:,.0f} jobs/s (CPU per job: client "
            f"{done.client_us:.1f} µs, daemon {done.daemon_us:.1f} µs), "
            f"one call per job {done.single:,.0f} jobs/s"
        )

    def median(figure: str) -> float:
        return float(statistics.median(float(getattr(done, figure)) for done in rounds))

    bulk, single = median("bulk"), median("single")
    print(
        f"median of {args.rounds}: {args.jobs:,} jobs in bulk at {bulk:,.0f} jobs/s "
        f"({bulk / single:.1f}x one call per job, {single:,.0f} jobs/s; CPU per job: client "
        f"{median('client_us'):.1f} µs, daemon {median('daemon_us'):.1f} µs); "
        f"aim >= {AIM:,.0f} jobs/s: {'met' if bulk >= AIM else 'not met'} ({bulk / AIM:.2f}x)"
    )


if __name__ == "__main__":
    main()
