"""This checkout's daemon against another revision's, side by side: `bench/compare.py`.

    .venv/bin/python bench/compare.py --base HEAD~1            # 5 rounds, interleaved
    .venv/bin/python bench/compare.py --base c4bc6d7 --rounds 3 --jobs 3000
    .venv/bin/python bench/compare.py --base f4ddbe6,main --rounds 7   # three daemons

Each round measures both daemons, one after the other, on two workloads:

- w1: `--jobs` no-op jobs submitted one `run_background_job()` call at a time, from the
  first submit to the last completion (jobs/s), with the daemon's and the workers' CPU per
  job (from /proc);
- drain: `--jobs` no-op jobs stored to come due at one instant 2 s later, from that
  instant to the last completion (jobs/s): how fast due jobs are dispatched and recorded;
- w2: `--jobs` no-op jobs submitted one call at a time while the workers consume them,
  each call timed (`perf_counter_ns`): the submit latency's p50 and p99 in µs;
- w2quiet: the same with the jobs due in an hour, so that only the submit path runs.

The base revision is checked out into a temporary git worktree and its daemon started
from there (the client is this checkout's: the protocol must not have changed between
the two). Each line also says how busy the whole machine was meanwhile (`machine %`, ours
included). Medians and their ratio come last, and the median of the rounds' own ratios
(`paired`); the machine is shared and noisy, so compare medians of interleaved rounds,
never single runs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

REPO: Final = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench import procs  # noqa: E402
from bench.bgjobs_target import BgjobsTarget, Daemon, Workspace  # noqa: E402
from bgjobctl.library import close_clients, run_background_job  # noqa: E402

DUE_IN_SECONDS: Final = 2.0


def _cpu(pid: int) -> float:
    return sum(procs.cpu_seconds(pid))


def _wait_finished(target: BgjobsTarget, count: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while (finished := target.finished()) is None or sum(finished) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {finished} of {count} jobs finished in {timeout}s")
        time.sleep(0.002)


def measure(code: Path | None, workload: str, jobs: int) -> dict[str, float]:
    """One run of a workload against a fresh daemon from `code` (None: this checkout)."""
    workspace = Workspace("cmp")
    daemon = Daemon(workspace, code=code)
    try:
        daemon.wait_ready()
        target = BgjobsTarget(daemon)
        config = str(workspace.config)
        pids = procs.tree(daemon.pid)
        warm_up = 200
        for _ in range(warm_up):
            run_background_job("Noop", "handle", [], config=config, fallback="error")
        _wait_finished(target, warm_up)
        if workload in ("w2", "w2quiet"):
            later = 3600.0 if workload == "w2quiet" else 0.0
            daemon_before = _cpu(pids[0])
            timings: list[int] = []
            clock = time.perf_counter_ns
            for _ in range(jobs):
                started_ns = clock()
                run_background_job(
                    "Noop", "handle", [], delay=later, config=config, fallback="error"
                )
                timings.append(clock() - started_ns)
            if not later:
                _wait_finished(target, warm_up + jobs)
            daemon_cpu = _cpu(pids[0]) - daemon_before
            target.close()
            close_clients()
            timings.sort()
            return {
                "p50 µs": timings[len(timings) // 2] / 1000,
                "p99 µs": timings[min(len(timings) - 1, len(timings) * 99 // 100)] / 1000,
                "daemon µs/job": daemon_cpu / jobs * 1e6,
            }
        if workload == "w1":
            before = [_cpu(pid) for pid in pids]
            started = time.perf_counter()
            for _ in range(jobs):
                run_background_job("Noop", "handle", [], config=config, fallback="error")
            _wait_finished(target, warm_up + jobs)
            elapsed = time.perf_counter() - started
        else:
            due = time.time() + DUE_IN_SECONDS
            at = datetime.fromtimestamp(due, UTC)
            for _ in range(jobs):
                run_background_job("Noop", "handle", [], at=at, config=config, fallback="error")
            while time.time() < due - 0.05:
                time.sleep(0.01)
            before = [_cpu(pid) for pid in pids]
            _wait_finished(target, warm_up + jobs)
            elapsed = time.time() - due
        after = [_cpu(pid) for pid in pids]
        target.close()
        close_clients()
        return {
            "jobs/s": jobs / elapsed,
            "daemon µs/job": (after[0] - before[0]) / jobs * 1e6,
            "workers µs/job": (sum(after[1:]) - sum(before[1:])) / jobs * 1e6,
        }
    finally:
        daemon.stop()
        workspace.remove()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--base",
        required=True,
        help="the revision to compare with; several, comma-separated, are measured in turn "
        "and each compared with the first",
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=4000)
    parser.add_argument("--workloads", default="w1,drain,w2", help="of w1,drain,w2,w2quiet")
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=0.0,
        help="before each run, wait up to this many seconds for the machine to be idle",
    )
    args = parser.parse_args()
    workloads = [name for name in args.workloads.split(",") if name]
    revisions = [name for name in args.base.split(",") if name]
    with tempfile.TemporaryDirectory(prefix="bgb-base-") as directory:
        checkouts: list[tuple[str, Path | None]] = []
        try:
            for number, revision in enumerate(revisions):
                checkout = Path(directory) / f"bgjobs{number}"
                add = ["git", "-C", str(REPO), "worktree", "add", "--detach", "-q"]
                subprocess.run([*add, str(checkout), revision], check=True)
                checkouts.append((revision, checkout))
            checkouts.append(("this", None))
            figures = measure_rounds(checkouts, workloads, args)
        finally:
            for _, checkout in checkouts:
                if checkout is not None:
                    subprocess.run(
                        ["git", "-C", str(REPO), "worktree", "remove", "--force", str(checkout)],
                        check=False,
                    )
    first = revisions[0]
    print(f"\nmedians of {args.rounds} rounds ({first} = base; paired: the median of each")
    print("round's own ratio, which a drift of the machine's load between rounds does not move):")
    for workload in workloads:
        olds = figures[(workload, first)]
        for label, _ in checkouts[1:]:
            news = figures[(workload, label)]
            for key in olds[0]:
                old = statistics.median(run[key] for run in olds)
                new = statistics.median(run[key] for run in news)
                paired = statistics.median(b[key] / a[key] for a, b in zip(olds, news, strict=True))
                print(
                    f"  {workload:5} {key:15} base {old:8,.0f}  {label:>8} {new:8,.0f}  "
                    f"ratio {new / old:.2f}  paired {paired:.2f}"
                )
    return 0


def measure_rounds(
    checkouts: list[tuple[str, Path | None]], workloads: list[str], args: argparse.Namespace
) -> dict[tuple[str, str], list[dict[str, float]]]:
    """Round after round, each workload on each checkout in turn."""
    figures: dict[tuple[str, str], list[dict[str, float]]] = {}
    cores = os.cpu_count() or 1
    for round_number in range(1, args.rounds + 1):
        for workload in workloads:
            for label, code in checkouts:
                if args.quiet_wait:
                    procs.wait_for_quiet(timeout=args.quiet_wait)
                machine_before = procs.machine_busy()[0]
                started = time.perf_counter()
                result = measure(code, workload, args.jobs)
                busy = procs.machine_busy()[0] - machine_before
                result["machine %"] = 100 * busy / ((time.perf_counter() - started) * cores)
                figures.setdefault((workload, label), []).append(result)
                shown = ", ".join(f"{key} {value:,.0f}" for key, value in result.items())
                print(f"round {round_number} {workload:5} {label:8}  {shown}", flush=True)
    return figures


if __name__ == "__main__":
    sys.exit(main())
