"""Warm workers forked from a template against new interpreters: `bench/worker_start.py`.

    .venv/bin/python bench/worker_start.py                     # 3 rounds, 2 workers
    .venv/bin/python bench/worker_start.py --base main --rounds 5 --workers 8

Each round starts one daemon per variant, one after the other (`fork` and `spawn`: this
checkout with `[daemon] worker_start` set so; `base`: the `--base` revision's daemon as it
is), on the benchmark's jobs package (`bench/jobs`, as `benchjobs`), and measures:

- ready s: from starting the daemon to `--workers` workers in its stats;
- W5 idle: PSS and RSS (MiB, `/proc/PID/smaps_rollup`) of the daemon and every process
  below it (template included) after 3 s idle; again after 300 no-op jobs (`after jobs`);
- reload s: from SIGHUP to a whole new set of workers ready (a new template too);
- recycle jobs/s: 100 no-op jobs one call at a time with `max_jobs_per_worker = 1` (set
  by a reload), so that every job waits for a worker to start.

Medians of the rounds come last, with each variant's ratio to the first one.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Final

REPO: Final = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench import procs  # noqa: E402
from bench.bgjobs_target import BgjobsTarget, Daemon, Workspace  # noqa: E402
from bgjobctl.library import close_clients, run_background_job  # noqa: E402

JOBS: Final = 300
RECYCLED_JOBS: Final = 100
IDLE: Final = 3.0


def _configure(workspace: Workspace, extra: str) -> None:
    marker = 'isolation = "warm"\n'
    text = workspace.config.read_text()
    workspace.config.write_text(text.replace(marker, marker + extra))


def _worker_pids(workspace: Workspace) -> set[int]:
    client = workspace.client()
    try:
        return {worker.pid for worker in client.stats().workers}
    finally:
        client.close()


def _wait(condition: object, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise RuntimeError("timed out")
        time.sleep(0.005)


def _run_jobs(config: str, target: BgjobsTarget, count: int) -> float:
    before = sum(target.finished() or (0, 0))
    started = time.perf_counter()
    for _ in range(count):
        run_background_job("Noop", "handle", [], config=config, fallback="error")
    _wait(lambda: sum(target.finished() or (0, 0)) >= before + count, 300)
    return count / (time.perf_counter() - started)


def measure(variant: str, code: Path | None, workers: int) -> dict[str, float]:
    workspace = Workspace(f"ws-{variant}", workers=workers)
    if variant != "base":
        _configure(workspace, f'worker_start = "{variant}"\n')
    daemon = Daemon(workspace, code=code)
    try:
        daemon.wait_ready()
        _wait(lambda: len(_worker_pids(workspace)) == workers)
        ready = time.perf_counter() - daemon.started
        time.sleep(IDLE)
        idle = procs.memory(procs.tree(daemon.pid))
        old = _worker_pids(workspace)
        hup = time.perf_counter()
        os.kill(daemon.pid, signal.SIGHUP)
        _wait(lambda: len(new := _worker_pids(workspace)) == workers and not new & old)
        reload = time.perf_counter() - hup
        target = BgjobsTarget(daemon)
        config = str(workspace.config)
        _run_jobs(config, target, JOBS)
        time.sleep(1.0)
        after = procs.memory(procs.tree(daemon.pid))
        _configure(workspace, "max_jobs_per_worker = 1\n")
        os.kill(daemon.pid, signal.SIGHUP)
        time.sleep(1.0)
        recycle = _run_jobs(config, target, RECYCLED_JOBS)
        target.close()
        close_clients()
        return {
            "ready s": ready,
            "W5 idle PSS MiB": idle.pss_mib,
            "W5 idle RSS MiB": idle.rss_mib,
            "after jobs PSS MiB": after.pss_mib,
            "reload s": reload,
            "recycle jobs/s": recycle,
            "processes": idle.processes,
        }
    finally:
        daemon.stop()
        workspace.remove()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", help="also the daemon of this revision, as it is")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    variants: list[tuple[str, Path | None]] = [("spawn", None), ("fork", None)]
    base: Path | None = None
    if args.base:
        base = Path(tempfile.mkdtemp(prefix="bgb-base-"))
        subprocess.run(
            ["git", "-C", str(REPO), "worktree", "add", "--detach", "-q", str(base), args.base],
            check=True,
        )
        variants.insert(0, ("base", base))
    results: dict[str, list[dict[str, float]]] = {name: [] for name, _ in variants}
    try:
        for round_number in range(1, args.rounds + 1):
            for name, code in variants:
                figures = measure(name, code, args.workers)
                results[name].append(figures)
                shown = ", ".join(f"{key} {value:.3g}" for key, value in figures.items())
                print(f"round {round_number} {name}: {shown}", flush=True)
    finally:
        procs.sweep()
        if base is not None:
            subprocess.run(
                ["git", "-C", str(REPO), "worktree", "remove", "--force", str(base)], check=False
            )
    first = variants[0][0]
    print(f"\nmedians of {args.rounds} rounds, {args.workers} workers (ratio to {first}):")
    for key in results[first][0]:
        reference = statistics.median(r[key] for r in results[first])
        cells = []
        for name, _ in variants:
            value = statistics.median(r[key] for r in results[name])
            cells.append(f"{name} {value:.3g} ({value / reference:.2f}x)")
        print(f"  {key}: " + ", ".join(cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
