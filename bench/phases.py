"""One system's pass over the workloads: their sizes, their order, and each figure
measured so that a failure is recorded and the pass goes on."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import aim_workloads, workloads
from bench.report import SystemResults
from bench.workloads import Counters


@dataclass(frozen=True)
class Sizes:
    w1_small: int = 2_000
    w1_large: int = 10_000
    w2: int = 1_000
    w3: int = 1_000
    w3_peer: int = 200
    w3_paced: int = 200
    w3_instant: int = 1_000
    w3_delay: float = 2.0
    w3_lead: float = 4.0
    """W3 at one instant: the instant is this long after the first enqueue."""
    pace: float = 0.01
    w4: int = 20
    idle: float = 3.0
    million: int = 1_000_000
    million_submits: int = 1_000
    original: int = 200
    bulk: int = 100_000

    @classmethod
    def quick(cls) -> Sizes:
        return cls(
            w1_small=100,
            w1_large=500,
            w2=100,
            w3=50,
            w3_peer=0,
            w3_paced=0,
            w3_instant=50,
            w3_delay=0.5,
            w3_lead=1.0,
            w4=6,
            idle=0.5,
            million=50_000,
            million_submits=50,
            original=12,
            bulk=2_000,
        )


def attempt(results: SystemResults, key: str, label: str, measure: Callable[[], Any]) -> None:
    """Measure one figure; a failure is recorded and printed, and the run goes on."""
    try:
        value = measure()
    except Exception as exc:  # noqa: BLE001 - any failure is one figure's, not the run's
        value = f"FAILED: {exc}"
    results.record(key, label, value)


def run_all(
    target: workloads.Target,
    results: SystemResults,
    *,
    sizes: Sizes,
    only: set[str],
    counters: Counters,
    workdir: Path,
) -> None:
    """W5 (fresh), W2, W1 (INCR), W3 (1,000, the peers' 200, paced, and all due at one
    instant), W4: in that order, so W5 sees the processes as started and W1 starts after
    its idle pause."""
    if "W5" in only:
        attempt(
            results,
            "w5",
            f"W5 idle memory ({sizes.idle:g} s idle)",
            lambda: workloads.w5_idle_memory(target, sizes.idle),
        )
    if "W2" in only:
        attempt(
            results,
            "w2",
            f"W2 enqueue latency ({sizes.w2:,} calls)",
            lambda: workloads.w2_submit_latency(target, counters, sizes.w2),
        )
        attempt(
            results,
            "w2_quiet",
            f"W2, nothing consuming ({sizes.w2:,} calls)",
            lambda: workloads.w2_quiet_latency(target, sizes.w2),
        )
    if "W1" in only:
        attempt(
            results,
            "w1_incr",
            f"W1 {sizes.w1_small:,} INCR jobs",
            lambda: workloads.w1_throughput(target, counters, sizes.w1_small, sizes.idle),
        )
    if "W3" in only:
        _run_w3(target, results, sizes, workdir)
    if "W4" in only:
        attempt(
            results,
            "w4",
            f"W4 {sizes.w4} jobs sleeping 0.5 s",
            lambda: workloads.w4_parallelism(target, counters, sizes.w4, 0.5),
        )


def _run_w3(target: workloads.Target, results: SystemResults, sizes: Sizes, workdir: Path) -> None:
    attempt(
        results,
        "w3",
        f"W3 {sizes.w3:,} jobs due in {sizes.w3_delay:g} s",
        lambda: workloads.w3_lateness(target, workdir, sizes.w3, sizes.w3_delay),
    )
    if sizes.w3_peer:
        attempt(
            results,
            "w3_peer",
            f"W3 {sizes.w3_peer:,} jobs due in {sizes.w3_delay:g} s (peers' count)",
            lambda: workloads.w3_lateness(target, workdir, sizes.w3_peer, sizes.w3_delay),
        )
    if sizes.w3_paced:
        attempt(
            results,
            "w3_paced",
            f"W3 {sizes.w3_paced:,} due in {sizes.w3_delay:g} s, 1 per {sizes.pace * 1000:g} ms",
            lambda: workloads.w3_lateness(
                target, workdir, sizes.w3_paced, sizes.w3_delay, pace=sizes.pace
            ),
        )
    attempt(
        results,
        "w3_instant",
        f"W3 {sizes.w3_instant:,} due at one instant",
        lambda: aim_workloads.w3_instant(target, workdir, sizes.w3_instant, sizes.w3_lead),
    )


def run_after(
    target: workloads.Target, results: SystemResults, *, sizes: Sizes, only: set[str]
) -> None:
    """After the workloads: memory again (W5), then the bulk enqueue (W7) last, since it
    leaves its jobs stored (due in an hour) until the system stops."""
    if "W5" in only:
        attempt(
            results,
            "w5_after",
            f"W5 memory, {sizes.idle:g} s idle after all",
            lambda: workloads.w5_idle_memory(target, sizes.idle),
        )
    bulk = getattr(target, "bulk_noop", None)
    if "W7" in only and bulk is not None:
        attempt(
            results,
            "bulk",
            f"W7 bulk enqueue of {sizes.bulk:,} no-op jobs",
            lambda: aim_workloads.bulk_enqueue(target, sizes.bulk),  # type: ignore[arg-type]
        )
