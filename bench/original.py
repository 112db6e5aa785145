"""The original's design: every job is its own `python run_job.py Class method "params"`
process, spawned by the caller and left to run (no daemon, no pool).

Only W1 is measured (and the spawn call's latency, the caller's cost per job): the design
has no concurrency limit (W4's "2 workers" does not exist) and a delayed job is a process
sleeping until its time (W3 with 1,000 jobs would be 2,000 live interpreters).
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from bench import procs
from bench.bgjobs_target import Workspace
from bench.workloads import Counters, Latency, Throughput, WorkloadFailed, percentile

REPO: Final = Path(__file__).resolve().parents[1]
MAX_IN_FLIGHT: Final = 4
"""The original spawned without limit. On 2 cores the design is CPU-bound on interpreter
start-up (each run_job.py also starts a worker process), and more processes in flight only
contend: with 40 no-op jobs, 1/2/4/16 in flight gave 5/9/10/7 jobs/s. So the caller waits
for a slot past 4, the design's best case here; the spawn call is timed without the wait."""


@dataclass
class OriginalResult:
    throughput: Throughput
    spawn: Latency
    exit_codes_nonzero: int


def run_w1(workspace: Workspace, counters: Counters, jobs: int, idle: float) -> OriginalResult:
    time.sleep(idle)
    key = counters.fresh("orig")
    env = procs.child_env()
    running: list[subprocess.Popen[bytes]] = []
    spawn_ns: list[int] = []
    failures = 0
    started = time.perf_counter()
    for _ in range(jobs):
        while len(running) >= MAX_IN_FLIGHT:
            still = []
            for process in running:
                code = process.poll()
                if code is None:
                    still.append(process)
                elif code != 0:
                    failures += 1
            running = still
            if len(running) >= MAX_IN_FLIGHT:
                time.sleep(0.001)
        before = time.perf_counter_ns()
        running.append(
            subprocess.Popen(
                [
                    sys.executable,
                    str(REPO / "run_job.py"),
                    "Incr",
                    "handle",
                    key,
                    "--config",
                    str(workspace.config),
                ],
                cwd=workspace.root,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        )
        spawn_ns.append(time.perf_counter_ns() - before)
    submitted = time.perf_counter()
    try:
        done = counters.wait(key, jobs, 60 + jobs)
    except WorkloadFailed:
        failures += sum(1 for p in running if p.poll() not in (None, 0))
        raise
    for process in running:
        if process.wait(30) != 0:
            failures += 1
    micro = sorted(t / 1000 for t in spawn_ns)
    return OriginalResult(
        Throughput(jobs, done - started, submitted - started, "Redis INCR counter"),
        Latency(
            len(micro),
            percentile(micro, 0.5),
            percentile(micro, 0.99),
            micro[-1],
            sum(micro) / len(micro),
        ),
        failures,
    )
