"""Micro-benchmarks of the daemon's per-job operations, one at a time and in-process, so
each has a cost in µs free of scheduling noise: `bench/hotpaths.py --micro`.

Each figure is the best of several repeats of a loop over fresh jobs, against the real
classes (`SQLiteStore` on a WAL database as the daemon opens it, `JobLog`, `locks`, the
frame codec); the worker's output capture runs in a child process, since it points fds 1
and 2 elsewhere.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

from bench.bgjobs_target import Workspace
from bgjobd.store.sqlite import SQLiteStore
from bgjobs.config import Config

REPEATS: Final = 5
OWNER: Final = "bgjobd@bench"
Results = list[tuple[str, float]]


def best_us(loop: Callable[[int], object], count: int) -> float:
    """Best (lowest) µs per operation of `loop(count)` over REPEATS runs."""
    best = float("inf")
    for _ in range(REPEATS):
        started = time.perf_counter()
        loop(count)
        best = min(best, (time.perf_counter() - started) / count)
    return best * 1e6


def store_costs(config: Config, count: int) -> Results:
    from bgjobd import submission
    from bgjobs.model import JobSpec

    store = SQLiteStore(config.database_path)
    spec = JobSpec(class_name="Noop", method="handle", params=[])
    rows = submission.build(config, spec, time.time(), OWNER)
    ids: list[int] = []

    def build(n: int) -> None:
        now = time.time()
        for _ in range(n):
            submission.build(config, spec, now, OWNER)

    def add_commit(n: int) -> None:
        for _ in range(n):
            ids.extend(store.add(rows))
            store.commit()

    def add_batched(n: int) -> None:
        for i in range(n):
            ids.extend(store.add(rows))
            if i % 100 == 99:
                store.commit()
        store.commit()

    results = [
        ("submission.build (spec -> row)", best_us(build, count)),
        ("store.add + COMMIT, one job per commit", best_us(add_commit, count)),
        ("store.add, COMMIT every 100 jobs", best_us(add_batched, count)),
    ]
    results += transition_costs(store, ids, count)
    store.close()
    return results


def transition_costs(store: SQLiteStore, ids: list[int], count: int) -> Results:
    from bgjobd.store.base import FinishedAttempt
    from bgjobs.model import JobState, Outcome

    queued, claimed = iter(ids), iter(ids)

    def claim_commit(n: int) -> None:
        for _ in range(n):
            store.claim(next(queued), OWNER, 4242, time.time())
            store.commit()

    def finish_commit(n: int) -> None:
        for _ in range(n):
            attempt = FinishedAttempt(1, Outcome.SUCCEEDED, time.time(), 0.0001)
            store.finish_attempt(next(claimed), attempt, JobState.SUCCEEDED, result=None)
            store.commit()

    def get(n: int) -> None:
        for i in range(n):
            store.get(ids[i])

    return [
        ("store.claim + COMMIT (queued -> running)", best_us(claim_commit, count)),
        ("store.finish_attempt + COMMIT", best_us(finish_commit, count)),
        ("store.get (row -> JobInfo + history)", best_us(get, count)),
    ]


def log_costs(config: Config, count: int) -> Results:
    from bgjobd.joblog import JobLog, describe_params

    joblog = JobLog(config.logs_dir)

    def line(n: int) -> None:
        for i in range(n):
            joblog.info("Noop::handle", f"job {i} attempt 1/1 started in worker 4242 (params: [])")

    def params(n: int) -> None:
        for _ in range(n):
            describe_params([])

    return [
        ("JobLog.info: one log line", best_us(line, count)),
        ("describe_params([])", best_us(params, count)),
    ]


def lock_costs(config: Config, count: int) -> Results:
    from bgjobd import locks

    results: Results = []
    shm = Path(tempfile.mkdtemp(prefix="bgb-locks-", dir="/dev/shm"))
    try:
        for label, directory in (("disk", config.locks_dir), ("tmpfs", shm)):
            directory.mkdir(parents=True, exist_ok=True)

            def lock(n: int, directory: Path = directory) -> None:
                for i in range(n):
                    path = locks.lock_path(directory, "Noop", "handle", i)
                    info = locks.make_info(i, "Noop", "handle", pid=4242, attempt=1, owner=OWNER)
                    locks.acquire(path, info)
                    locks.release(path)

            results.append((f"lock file create + remove ({label})", best_us(lock, count)))
    finally:
        for leftover in shm.iterdir():
            leftover.unlink()
        shm.rmdir()
    return results


def frame_costs(count: int) -> Results:
    from bgjobs.model import JobSpec
    from bgjobs.protocol import FrameEncoder, Submit, Submitted, decode_request

    encoder = FrameEncoder()
    request = Submit(rid=7, jobs=[JobSpec(class_name="Noop", method="handle", params=[])])

    def frames(n: int) -> None:
        for _ in range(n):
            decode_request(encoder.encode(request)[4:])
            encoder.encode(Submitted(rid=7, ids=[1], last_ids=[1], existing=[False]))

    return [("frames: encode + decode Submit, encode reply", best_us(frames, count))]


def capture_cost(directory: Path, count: int) -> Results:
    """The worker's Output.capture + release per attempt of a job that prints nothing, in a
    child process whose fds 1 and 2 it may take over."""
    read_end, write_end = os.pipe()
    script = f"""
import os, time
from bgjobd.worker.main import Output
out = Output(); out.release()
best = float("inf")
for r in range({REPEATS}):
    started = time.perf_counter()
    for i in range({count}):
        out.capture({str(directory)!r} + f"/{{r}}-{{i}}.log")
        out.release()
    best = min(best, (time.perf_counter() - started) / {count})
os.write({write_end}, repr(best * 1e6).encode())
"""
    directory.mkdir(parents=True, exist_ok=True)
    child = subprocess.Popen([sys.executable, "-c", script], pass_fds=(write_end,))
    os.close(write_end)
    with os.fdopen(read_end, "rb") as reader:
        text = reader.read().decode()
    child.wait(60)
    return [("worker: output capture + release", float(text) if text else float("nan"))]


def main(count: int = 2000) -> None:
    from bgjobs.config import load_config

    workspace = Workspace("micro")
    try:
        config = load_config(workspace.config)
        results = store_costs(config, count)
        results += log_costs(config, count)
        results += lock_costs(config, count)
        results += frame_costs(count)
        results += capture_cost(config.job_output_dir, count)
    finally:
        workspace.remove()
    print(f"per-operation cost, best of {REPEATS} x {count:,} (µs):")
    for label, micro in results:
        print(f"  {micro:8.1f}  {label}")
