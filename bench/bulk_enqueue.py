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
from pathlib import Path
from typing import Final

REPO: Final = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.bgjobs_target import Daemon, Workspace  # noqa: E402
from bgjobctl.library import close_clients, run_background_job  # noqa: E402
from bgjobctl.many import run_background_jobs  # noqa: E402

LATER: Final = 3600.0
ONE_BY_ONE_MAX: Final = 10_000
AIM: Final = 50_000.0


def one_round(jobs: int) -> tuple[float, float]:
    """(bulk jobs/s, one-call-per-job jobs/s) against a fresh daemon."""
    workspace = Workspace("bulk")
    daemon = Daemon(workspace)
    try:
        daemon.wait_ready()
        config = str(workspace.config)
        run_background_jobs([("Noop", "handle")] * 100, LATER, config=config, fallback="error")
        started = time.perf_counter()
        handles = run_background_jobs(
            (("Noop", "handle", [n]) for n in range(jobs)), LATER, config=config, fallback="error"
        )
        bulk = len(handles) / (time.perf_counter() - started)
        single = min(jobs, ONE_BY_ONE_MAX)
        started = time.perf_counter()
        for n in range(single):
            run_background_job("Noop", "handle", [n], LATER, config=config, fallback="error")
        return bulk, single / (time.perf_counter() - started)
    finally:
        close_clients()
        daemon.stop()
        workspace.remove()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    bulks, singles = [], []
    for number in range(1, args.rounds + 1):
        bulk, single = one_round(args.jobs)
        bulks.append(bulk)
        singles.append(single)
        print(f"round {number}: bulk {bulk:,.0f} jobs/s, one call per job {single:,.0f} jobs/s")
    bulk, single = statistics.median(bulks), statistics.median(singles)
    print(
        f"median of {args.rounds}: {args.jobs:,} jobs in bulk at {bulk:,.0f} jobs/s "
        f"({bulk / single:.1f}x one call per job, {single:,.0f} jobs/s); "
        f"aim >= {AIM:,.0f} jobs/s: {'met' if bulk >= AIM else 'not met'} ({bulk / AIM:.2f}x)"
    )


if __name__ == "__main__":
    main()
