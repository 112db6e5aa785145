"""Printing: the machine, each figure as it is measured, the side-by-side table, the ratios
to the peers and each aim of issue 3 with its verdict."""

from __future__ import annotations

import contextlib
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.aim_workloads import InstantBurst
from bench.procs import Memory
from bench.workloads import Latency, Lateness, Parallelism, Throughput

REPO = Path(__file__).resolve().parents[1]


def say(text: str = "") -> None:
    print(text, flush=True)


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _git() -> str:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, check=False
        ).stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--", "bgjobs", "bgjobd", "bgjobctl")
    return commit + (" + uncommitted changes in the packages" if dirty else "")


def machine_lines(redis_version: str) -> list[str]:
    return [
        f"command:  {shlex.join(sys.orig_argv)}   (cwd {Path.cwd()})",
        f"date:     {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}",
        f"machine:  {_cpu_model()}, {os.cpu_count()} cores "
        f"({len(os.sched_getaffinity(0))} usable), {platform.system()} {platform.release()}, "
        f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
        f"python:   {platform.python_implementation()} {platform.python_version()} "
        f"({sys.executable}){_bytecode_note()}",
        f"versions: bgjobs {_git()}, msgspec {_version('msgspec')}, uvloop "
        f"{_version('uvloop')}, huey {_version('huey')}, redis-py {_version('redis')}, "
        f"Redis server {redis_version}, SQLite {_sqlite_version()}",
    ]


def _bytecode_note() -> str:
    if os.environ.get("PYTHONDONTWRITEBYTECODE"):
        return ", PYTHONDONTWRITEBYTECODE set: the project's modules compile at every start"
    return ""


def _sqlite_version() -> str:
    import sqlite3

    return sqlite3.sqlite_version


# figures -----------------------------------------------------------------------------------


def fmt_throughput(t: Throughput) -> str:
    text = (
        f"{t.per_second:,.0f} jobs/s ({t.jobs:,} jobs in {t.seconds:.2f} s; "
        f"enqueueing took {t.submit_seconds:.2f} s; end: {t.signal})"
    )
    if t.cpu is not None:
        text += f"\n  {'':<38} {t.cpu.per_job(t.jobs)}"
    return text


def fmt_latency(lat: Latency) -> str:
    return (
        f"p50 {lat.p50_us:,.0f} µs, p99 {lat.p99_us:,.0f} µs "
        f"(mean {lat.mean_us:,.0f}, max {lat.max_us:,.0f}; {lat.calls:,} calls)"
    )


def fmt_lateness(late: Lateness) -> str:
    return (
        f"p50 {late.p50_ms:,.1f} ms, p99 {late.p99_ms:,.1f} ms, max {late.max_ms:,.1f} ms "
        f"(min {late.min_ms:,.1f}; {late.jobs:,} jobs enqueued in {late.submit_seconds:.2f} s)"
    )


def fmt_parallelism(par: Parallelism) -> str:
    ideal = par.jobs * par.sleep / 2
    return f"{par.wall:.2f} s for {par.jobs} x {par.sleep} s (ideal {ideal:.2f} s)"


def fmt_memory(mem: Memory) -> str:
    return mem.describe()


def describe(value: Any) -> str:
    for kind, formatter in _FORMATTERS.items():
        if isinstance(value, kind):
            return formatter(value)
    return f"{value:.3f} s" if isinstance(value, float) else str(value)


_FORMATTERS: dict[type, Callable[[Any], str]] = {
    Throughput: fmt_throughput,
    Latency: fmt_latency,
    Lateness: fmt_lateness,
    Parallelism: fmt_parallelism,
    Memory: fmt_memory,
    InstantBurst: InstantBurst.describe,
}


# results ------------------------------------------------------------------------------------


@dataclass
class SystemResults:
    name: str
    notes: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    """Figure key -> measured value, or an error message (str)."""
    rounds: list[dict[str, Any]] = field(default_factory=list)
    """The figures of each round, once rounds are merged into this system's row."""

    def record(self, key: str, label: str, value: Any) -> None:
        self.figures[key] = value
        say(f"  {label:<38} {describe(value)}")

    def get(self, key: str, kind: type) -> Any:
        value = self.figures.get(key)
        return value if isinstance(value, kind) else None

    def absorb(self, one_round: SystemResults) -> None:
        """One more round of this system: kept beside the others for the medians."""
        self.rounds.append(one_round.figures)
        self.figures = one_round.figures
        self.notes.extend(note for note in one_round.notes if note not in self.notes)

    def values(self, key: str, kind: type) -> list[Any]:
        """This figure in every round that measured it."""
        found = [figures.get(key) for figures in (self.rounds or [self.figures])]
        return [value for value in found if isinstance(value, kind)]


ROWS: list[tuple[str, str, type, str]] = [
    # figure key, row label (formatted with the run's counts), type, attribute shown
    ("w1_incr", "W1 jobs/s, {w1_small:,} INCR jobs*", Throughput, "per_second"),
    ("w1_noop", "W1 jobs/s, {w1_large:,} no-op jobs", Throughput, "per_second"),
    ("w2", "W2 enqueue p50 µs", Latency, "p50_us"),
    ("w2", "W2 enqueue p99 µs", Latency, "p99_us"),
    ("w2_quiet", "W2 p50 µs, nothing consuming", Latency, "p50_us"),
    ("w2_quiet", "W2 p99 µs, nothing consuming", Latency, "p99_us"),
    ("w3", "W3 lateness p50 ms ({w3:,})", Lateness, "p50_ms"),
    ("w3", "W3 lateness p99 ms ({w3:,})", Lateness, "p99_ms"),
    ("w3", "W3 lateness max ms ({w3:,})", Lateness, "max_ms"),
    ("w3_peer", "W3 lateness p50 ms ({w3_peer:,})", Lateness, "p50_ms"),
    ("w3_peer", "W3 lateness p99 ms ({w3_peer:,})", Lateness, "p99_ms"),
    ("w3_peer", "W3 lateness max ms ({w3_peer:,})", Lateness, "max_ms"),
    ("w3_paced", "W3 paced p50 ms ({w3_paced:,}, 1/{pace_ms:g}ms)", Lateness, "p50_ms"),
    ("w3_paced", "W3 paced p99 ms ({w3_paced:,}, 1/{pace_ms:g}ms)", Lateness, "p99_ms"),
    ("w3_paced", "W3 paced max ms ({w3_paced:,}, 1/{pace_ms:g}ms)", Lateness, "max_ms"),
    ("w4", "W4 wall s (ideal {w4_ideal:g})", Parallelism, "wall"),
    ("w3_instant", "W3 {w3_instant:,} due at one instant, max ms", InstantBurst, "max_ms"),
    ("w3_instant", "W3 one instant: past the drain, ms", InstantBurst, "overhead_ms"),
    ("bulk", "bulk enqueue jobs/s ({bulk:,})", Throughput, "per_second"),
    ("w5", "W5 idle RSS MiB", Memory, "rss_mib"),
    ("w5", "W5 idle PSS MiB", Memory, "pss_mib"),
    ("w5_after", "W5 RSS MiB after the workloads", Memory, "rss_mib"),
    ("w5_after", "W5 PSS MiB after the workloads", Memory, "pss_mib"),
]
HIGHER_IS_BETTER = {"per_second"}


def _cell(value: float | None, attr: str) -> str:
    if value is None:
        return "—"
    if attr == "per_second" or abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:,.2f}" if abs(value) < 10 else f"{value:,.1f}"


def value_of(results: SystemResults, key: str, kind: type, attr: str) -> float | None:
    """The median over the rounds of one attribute of a figure (None: not measured)."""
    found = [float(getattr(value, attr)) for value in results.values(key, kind)]
    return statistics.median(found) if found else None


def table(systems: list[SystemResults], counts: dict[str, Any]) -> None:
    """Every figure of every system side by side (— where not measured)."""
    width = 36
    col = 15
    header = f"{'':<{width}}" + "".join(f"{s.name[: col - 1]:>{col}}" for s in systems)
    say(header)
    for key, label, kind, attr in ROWS:
        cells = [value_of(s, key, kind, attr) for s in systems]
        if all(c is None for c in cells):
            continue
        shown = label.format(**counts)
        say(f"{shown:<{width}}" + "".join(f"{_cell(c, attr):>{col}}" for c in cells))


def ratios(ours: SystemResults, peers: list[SystemResults], counts: dict[str, Any]) -> None:
    """bgjobs / peer for each figure both measured; says which way is better."""
    for key, label, kind, attr in ROWS:
        mine = value_of(ours, key, kind, attr)
        if mine is None:
            continue
        parts = []
        for peer in peers:
            theirs = value_of(peer, key, kind, attr)
            if theirs is None or theirs == 0:
                continue
            parts.append(f"{mine / theirs:.3g}x {peer.name}")
        if parts:
            better = "higher" if attr in HIGHER_IS_BETTER else "lower"
            say(f"  {label.format(**counts):<36} " + ", ".join(parts) + f"  ({better} is better)")


@dataclass
class Aim:
    label: str
    limit: float
    unit: str
    at_most: bool

    def verdict(self, value: float | None) -> str:
        if value is None:
            return f"  {self.label:<44} not measured"
        met = value <= self.limit if self.at_most else value >= self.limit
        sign = "<=" if self.at_most else ">="
        return (
            f"  {self.label:<44} {value:>9,.1f} {self.unit:<6} aim {sign} "
            f"{self.limit:>5,g} {self.unit:<6} {'MET' if met else 'MISSED'}"
        )


def aims(results: SystemResults, startup_1m: float | None, counts: dict[str, Any]) -> None:
    checks = [
        (Aim("W2 submit p50", 150, "µs", True), value_of(results, "w2", Latency, "p50_us")),
        (Aim("W2 submit p99", 1000, "µs", True), value_of(results, "w2", Latency, "p99_us")),
        (
            Aim(f"W1 no-op jobs/s end to end ({counts['w1_large']:,})", 5000, "jobs/s", False),
            value_of(results, "w1_noop", Throughput, "per_second"),
        ),
        (
            Aim(f"W3 lateness p99, burst of {counts['w3']:,}", 5, "ms", True),
            value_of(results, "w3", Lateness, "p99_ms"),
        ),
        (
            Aim(f"W3 lateness p99, {counts['w3_paced']} paced", 5, "ms", True),
            value_of(results, "w3_paced", Lateness, "p99_ms"),
        ),
        (
            Aim("W5 idle daemon + 2 workers, PSS", 40, "MiB", True),
            value_of(results, "w5", Memory, "pss_mib"),
        ),
        (Aim(f"W6 start-up, {counts['million']:,} scheduled", 10, "s", True), startup_1m),
    ]
    for aim, value in checks:
        say(aim.verdict(value))
