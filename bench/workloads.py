"""The workloads of shared/reference/peer-benchmarks.md, written once for every system.

A system is a `Target`: it enqueues the four bench jobs (bench/jobs) and names its process
tree. Completions are counted the peers' way, by a Redis counter that the job INCRs, so the
same signal ends W1, W2's drain and W4 for every system; bgjobs' pure no-op run (W1, 10,000
jobs) is ended by the daemon's own stats counts instead.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from bench import procs


class Target(Protocol):
    name: str

    def root_pid(self) -> int: ...
    def roles(self) -> dict[str, list[int]]:
        """Its processes by role, for CPU accounting (e.g. daemon, workers)."""
        ...

    def noop(self) -> None: ...
    def incr(self, key: str) -> None: ...
    def late(self, path: str, due: float, delay: float) -> None: ...
    def sleep_incr(self, seconds: float, key: str) -> None: ...


class WorkloadFailed(Exception):
    pass


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of an ascending sequence."""
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[rank - 1]


class Counters:
    """Redis counters the jobs INCR; keys are private to this run and deleted after."""

    def __init__(self, redis: Any, prefix: str) -> None:
        self.redis = redis
        self.prefix = prefix
        self._serial = 0
        self.redis_pid = int(redis.info("server")["process_id"])

    def fresh(self, label: str) -> str:
        self._serial += 1
        return f"{self.prefix}:{label}:{self._serial}"

    def value(self, key: str) -> int:
        raw = self.redis.get(key)
        return int(raw) if raw is not None else 0

    def wait(self, key: str, target: int, timeout: float, interval: float = 0.002) -> float:
        """perf_counter() at which the counter was first seen at `target`."""
        deadline = time.monotonic() + timeout
        while True:
            if self.value(key) >= target:
                return time.perf_counter()
            if time.monotonic() > deadline:
                raise WorkloadFailed(
                    f"only {self.value(key)}/{target} jobs completed within {timeout:.0f}s"
                )
            time.sleep(interval)

    def cleanup(self) -> None:
        keys = list(self.redis.scan_iter(match=f"{self.prefix}:*", count=1000))
        if keys:
            self.redis.delete(*keys)


def _timeout(jobs: int, rate_floor: float = 20.0) -> float:
    """Generous: the slowest system measured (a process per job) does ~20 jobs/s."""
    return 60.0 + jobs / rate_floor


@dataclass
class Throughput:
    jobs: int
    seconds: float
    submit_seconds: float
    signal: str
    cpu: procs.CpuUse | None = None

    @property
    def per_second(self) -> float:
        return self.jobs / self.seconds


@dataclass
class Latency:
    calls: int
    p50_us: float
    p99_us: float
    max_us: float
    mean_us: float

    @classmethod
    def of(cls, timings_ns: list[int]) -> Latency:
        micro = sorted(t / 1000 for t in timings_ns)
        return cls(
            len(micro),
            percentile(micro, 0.50),
            percentile(micro, 0.99),
            micro[-1],
            sum(micro) / len(micro),
        )


@dataclass
class Lateness:
    jobs: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    min_ms: float
    submit_seconds: float


@dataclass
class Parallelism:
    jobs: int
    sleep: float
    wall: float


def _meter(target: Target, counters: Counters) -> procs.CpuMeter:
    roles = target.roles()
    roles["client"] = [os.getpid()]
    roles["redis"] = [counters.redis_pid]
    return procs.CpuMeter(roles)


def w1_throughput(target: Target, counters: Counters, jobs: int, idle: float) -> Throughput:
    """W1: after `idle` seconds, `jobs` INCR jobs one call at a time; first enqueue until the
    counter reaches `jobs`."""
    time.sleep(idle)
    key = counters.fresh("w1")
    meter = _meter(target, counters)
    started = time.perf_counter()
    for _ in range(jobs):
        target.incr(key)
    submitted = time.perf_counter()
    done = counters.wait(key, jobs, _timeout(jobs))
    cpu = meter.stop()
    return Throughput(jobs, done - started, submitted - started, "Redis INCR counter", cpu)


def w1_noop_throughput(
    target: Target,
    counters: Counters,
    finished: Callable[[], tuple[int, int] | None],
    jobs: int,
    *,
    idle: float,
    interval: float = 0.01,
) -> Throughput:
    """W1 with true no-op jobs, ended by the system's own count of finished jobs."""
    time.sleep(idle)
    meter = _meter(target, counters)
    before = finished()
    if before is None:
        raise WorkloadFailed("the system has no count of finished jobs")
    started = time.perf_counter()
    for _ in range(jobs):
        target.noop()
    submitted = time.perf_counter()
    deadline = time.monotonic() + _timeout(jobs)
    while True:
        now = finished()
        assert now is not None
        if now[1] > before[1]:
            raise WorkloadFailed(f"{now[1] - before[1]} job(s) failed")
        if now[0] - before[0] >= jobs:
            done = time.perf_counter()
            break
        if time.monotonic() > deadline:
            raise WorkloadFailed(f"only {now[0] - before[0]}/{jobs} finished in time")
        time.sleep(interval)
    cpu = meter.stop()
    return Throughput(jobs, done - started, submitted - started, "daemon stats count", cpu)


def w2_submit_latency(target: Target, counters: Counters, calls: int) -> Latency:
    """W2: `calls` back-to-back enqueue calls, each timed; the workers consume meanwhile.
    Waits for them all to finish, so the next workload starts from an empty queue."""
    key = counters.fresh("w2")
    target.incr(key)  # already connected: the first call may open the connection
    counters.wait(key, 1, _timeout(1))
    timings: list[int] = []
    clock = time.perf_counter_ns
    for _ in range(calls):
        started = clock()
        target.incr(key)
        timings.append(clock() - started)
    counters.wait(key, calls + 1, _timeout(calls))
    return Latency.of(timings)


def w2_quiet_latency(target: Target, calls: int) -> Latency:
    """W2 with nothing consuming: jobs due in an hour, so no worker runs while they are
    enqueued; the submit path alone, without the dispatch work competing for the CPU."""
    target.late("/dev/null", time.time() + 3600, 3600)  # the connection is open
    timings: list[int] = []
    clock = time.perf_counter_ns
    for _ in range(calls):
        started = clock()
        target.late("/dev/null", 0.0, 3600)
        timings.append(clock() - started)
    return Latency.of(timings)


def w3_lateness(
    target: Target, workdir: Path, jobs: int, delay: float = 2.0, pace: float = 0.0
) -> Lateness:
    """W3: `jobs` jobs each due `delay` s after its own enqueue (the system's native delay);
    each records time.time() - due when it starts. Back to back (the peers' way) the jobs
    come due as fast as they were enqueued, so lateness includes queueing behind the burst;
    `pace` seconds between enqueues, well below the throughput, isolates the timer."""
    path = workdir / f"w3-{target.name.replace(' ', '-')}-{jobs}-{time.time_ns()}.txt"
    path.touch()
    started = time.perf_counter()
    for index in range(jobs):
        if pace:
            _sleep_until(started + index * pace)
        # The due time is taken before the call: the job is measured against the earliest
        # moment the system could have meant, never flattered by the call's own duration.
        due = time.time() + delay
        target.late(str(path), due, delay)
    submit_seconds = time.perf_counter() - started

    def lines() -> int:
        with path.open("rb") as handle:
            return sum(1 for _ in handle)

    if not procs.wait_until(lambda: lines() >= jobs, _timeout(jobs) + delay, 0.02):
        raise WorkloadFailed(f"only {lines()}/{jobs} delayed jobs started in time")
    millis = sorted(float(line) * 1000 for line in path.read_text().split())
    return Lateness(
        jobs,
        percentile(millis, 0.50),
        percentile(millis, 0.99),
        millis[-1],
        millis[0],
        submit_seconds,
    )


def _sleep_until(moment: float) -> None:
    remaining = moment - time.perf_counter()
    if remaining > 0:
        time.sleep(remaining)


def w4_parallelism(
    target: Target, counters: Counters, jobs: int = 20, sleep: float = 0.5
) -> Parallelism:
    """W4: `jobs` jobs each sleeping `sleep` s; wall time from first enqueue to last end."""
    key = counters.fresh("w4")
    started = time.perf_counter()
    for _ in range(jobs):
        target.sleep_incr(sleep, key)
    done = counters.wait(key, jobs, _timeout(jobs) + jobs * sleep)
    return Parallelism(jobs, sleep, done - started)


def w5_idle_memory(target: Target, idle: float) -> procs.Memory:
    """W5: RSS and PSS summed over the whole process tree after `idle` seconds idle."""
    time.sleep(idle)
    # Every process of the system by role: its whole tree, or several trees (nodes, peers
    # with several worker processes).
    return procs.memory(pid for pids in target.roles().values() for pid in pids)
