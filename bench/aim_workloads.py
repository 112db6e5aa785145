"""The two workloads issue 14's aims add to peer-benchmarks.md's: many jobs due at one
instant (how soon after the drain they are all started), and a bulk enqueue (how many jobs
per second are acknowledged when they are sent in batches)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from bench import procs
from bench.workloads import Target, Throughput, WorkloadFailed, percentile


class BulkTarget(Protocol):
    def bulk_noop(self, count: int) -> None:
        """`count` no-op jobs due in an hour, in as few calls as the system allows."""
        ...


@dataclass
class InstantBurst:
    """Lateness of `jobs` jobs all due at one instant, in ms after it."""

    jobs: int
    first_ms: float
    p50_ms: float
    max_ms: float
    drain_ms: float
    """The time the workers need to start them all at the rate they kept up in the middle
    of the burst (from the 10th to the 90th percentile of the starts)."""
    submit_seconds: float

    @property
    def overhead_ms(self) -> float:
        """How much later than the drain alone the last job started: the aim's margin."""
        return self.max_ms - self.drain_ms

    def describe(self) -> str:
        return (
            f"first {self.first_ms:,.1f} ms, p50 {self.p50_ms:,.1f}, last {self.max_ms:,.1f} ms "
            f"after the instant; drain {self.drain_ms:,.1f} ms, so {self.overhead_ms:,.1f} ms "
            f"past it ({self.jobs:,} jobs enqueued in {self.submit_seconds:.2f} s)"
        )


def _enqueue_seconds(target: Target, jobs: int, probes: int = 20) -> float:
    """How long enqueueing `jobs` delayed jobs should take, from `probes` calls timed now
    (jobs due in an hour, writing to /dev/null: they never run within the run)."""
    started = time.perf_counter()
    for _ in range(probes):
        target.late("/dev/null", 0.0, 3600)
    return (time.perf_counter() - started) / probes * jobs


def w3_instant(target: Target, workdir: Path, jobs: int, lead: float = 4.0) -> InstantBurst:
    """`jobs` delayed jobs all due at one instant, `lead` s after the first enqueue plus
    twice the time the enqueues should take on this system (a slow client must not make
    the instant pass before the last enqueue); each asks for the delay left until that
    instant, and records time.time() - due when it starts."""
    path = workdir / f"w3i-{target.name.replace(' ', '-')}-{jobs}-{time.time_ns()}.txt"
    path.touch()
    due = time.time() + lead + 2 * _enqueue_seconds(target, jobs)
    started = time.perf_counter()
    for _ in range(jobs):
        target.late(str(path), due, due - time.time())
    submit_seconds = time.perf_counter() - started
    if time.time() >= due:
        raise WorkloadFailed(f"enqueueing {jobs} jobs took past their instant")

    def lines() -> int:
        with path.open("rb") as handle:
            return sum(1 for _ in handle)

    if not procs.wait_until(lambda: lines() >= jobs, 60 + (due - time.time()) + jobs / 20, 0.02):
        raise WorkloadFailed(f"only {lines()}/{jobs} jobs due at one instant started")
    millis = sorted(float(line) * 1000 for line in path.read_text().split())
    low, high = percentile(millis, 0.10), percentile(millis, 0.90)
    middle = max(1, round(0.8 * jobs))
    drain = jobs * (high - low) / middle
    return InstantBurst(
        jobs, millis[0], percentile(millis, 0.50), millis[-1], drain, submit_seconds
    )


def bulk_enqueue(target: BulkTarget, count: int) -> Throughput:
    """`count` no-op jobs due in an hour, acknowledged; jobs/s from the first call to the
    last acknowledgement (nothing runs them meanwhile)."""
    started = time.perf_counter()
    target.bulk_noop(count)
    seconds = time.perf_counter() - started
    return Throughput(count, seconds, seconds, "acknowledged (due in an hour)")
