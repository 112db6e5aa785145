"""One daemon against two daemons on one store, side by side: `bench/nodes.py`.

    .venv/bin/python bench/nodes.py                        # 5 rounds, 3,000 jobs each
    .venv/bin/python bench/nodes.py --rounds 3 --jobs 2000 --layouts 1x2,2x1

A layout is daemons x workers each: `1x2` is one daemon with 2 workers (today's single
node), `2x1` two daemons with one worker each (the same 2 workers in all: what sharing the
store costs), `2x2` two daemons with 2 workers each (what a second node adds on this
machine). The daemons of a layout have their own storage directories, sockets and
`[daemon] node`, and one `[store] path`.

Each run is W1 of bench/compare.py with the submits split across the daemons' sockets:
`--jobs` no-op jobs submitted one `run_background_job()` call at a time from one client,
round robin over the sockets (one socket for `1x2`), each call timed with
`perf_counter_ns`, from the first submit to the last completion (the shared store's
counts, read through the first daemon). It prints jobs/s, the submit latency's p50 and
p99 in µs, the daemons' CPU per job (summed), and how many of the jobs each node ran.
Layouts are interleaved round after round; medians and their ratio to the first layout
come last. The machine is shared and noisy: compare medians, never single runs.
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import sys
import time
from pathlib import Path
from typing import Final

REPO: Final = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench import procs  # noqa: E402
from bench.bgjobs_target import BgjobsTarget, Daemon  # noqa: E402
from bench.cluster_target import node_workspaces  # noqa: E402
from bench.workloads import percentile  # noqa: E402
from bgjobctl.library import close_clients, run_background_job  # noqa: E402

WARM_UP: Final = 200


class Layout:
    """`daemons` daemons with `workers` workers each, on the first one's store."""

    def __init__(self, name: str) -> None:
        daemons, _, workers = name.partition("x")
        self.name = name
        self.daemons = int(daemons)
        self.workers = int(workers)


def _wait_finished(target: BgjobsTarget, count: int, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while (finished := target.finished()) is None or sum(finished) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {finished} of {count} jobs finished in {timeout}s")
        time.sleep(0.002)


def _runs_per_node(database: Path) -> dict[str, int]:
    with sqlite3.connect(f"{database.as_uri()}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT owner, count(*) FROM jobs GROUP BY owner ORDER BY owner")
        return {str(owner): int(count) for owner, count in rows}


def measure(layout: Layout, jobs: int) -> tuple[dict[str, float], dict[str, int]]:
    """One run: fresh daemons, warm-up, then `jobs` submits round robin over the sockets."""
    workspaces = node_workspaces(layout.daemons, workers=layout.workers)
    daemons: list[Daemon] = []
    try:
        for workspace in workspaces:
            daemons.append(Daemon(workspace))
        for daemon in daemons:
            daemon.wait_ready()
        target = BgjobsTarget(daemons[0])  # the counts are the shared store's
        configs = [str(workspace.config) for workspace in workspaces]
        for number in range(WARM_UP):
            config = configs[number % len(configs)]
            run_background_job("Noop", "handle", [], config=config, fallback="error")
        _wait_finished(target, WARM_UP)
        daemon_pids = [daemon.pid for daemon in daemons]
        before = sum(sum(procs.cpu_seconds(pid)) for pid in daemon_pids)
        timings: list[int] = []
        clock = time.perf_counter_ns
        started = time.perf_counter()
        for number in range(jobs):
            config = configs[number % len(configs)]
            submitted_ns = clock()
            run_background_job("Noop", "handle", [], config=config, fallback="error")
            timings.append(clock() - submitted_ns)
        _wait_finished(target, WARM_UP + jobs)
        elapsed = time.perf_counter() - started
        daemon_cpu = sum(sum(procs.cpu_seconds(pid)) for pid in daemon_pids) - before
        target.close()
        close_clients()
        timings.sort()
        figures = {
            "jobs/s": jobs / elapsed,
            "p50 µs": percentile(timings, 0.50) / 1000,
            "p99 µs": percentile(timings, 0.99) / 1000,
            "daemons µs/job": daemon_cpu / jobs * 1e6,
        }
        return figures, _runs_per_node(workspaces[0].database)
    finally:
        for daemon in daemons:
            daemon.stop()
        for workspace in workspaces:
            workspace.remove()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=3000)
    parser.add_argument(
        "--layouts", default="1x2,2x1,2x2", help="daemons x workers each; the first is the base"
    )
    args = parser.parse_args()
    layouts = [Layout(name) for name in args.layouts.split(",") if name]
    figures: dict[str, list[dict[str, float]]] = {}
    for round_number in range(1, args.rounds + 1):
        for layout in layouts:
            result, per_node = measure(layout, args.jobs)
            figures.setdefault(layout.name, []).append(result)
            shown = ", ".join(f"{key} {value:,.0f}" for key, value in result.items())
            ran = ", ".join(f"{node} {count}" for node, count in per_node.items())
            print(f"round {round_number} {layout.name}  {shown}  (ran: {ran})", flush=True)
    base = layouts[0].name
    print(f"\nmedians of {args.rounds} rounds, {args.jobs} jobs each ({base} = base):")
    for key in figures[base][0]:
        old = statistics.median(run[key] for run in figures[base])
        line = f"  {key:15} {base} {old:8,.0f}"
        for layout in layouts[1:]:
            new = statistics.median(run[key] for run in figures[layout.name])
            line += f"   {layout.name} {new:8,.0f} (ratio {new / old:.2f})"
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
