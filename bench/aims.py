"""The aims of issues 14 and 12, each printed with the measured figures, their ratio and
whether it is met. Every figure is the median of the run's rounds (bench/report.py)."""

from __future__ import annotations

from bench.aim_workloads import InstantBurst
from bench.procs import Memory
from bench.report import SystemResults, say, value_of
from bench.workloads import Latency, Lateness, Throughput


def _find(systems: list[SystemResults], name: str) -> SystemResults | None:
    return next((s for s in systems if s.name == name), None)


def _ratio_line(
    label: str, mine: float | None, theirs: float | None, limit: float, *, at_least: bool
) -> None:
    if mine is None or not theirs:
        say(f"  {label:<52} not measured")
        return
    ratio = mine / theirs
    met = ratio >= limit if at_least else ratio <= limit
    sign = ">=" if at_least else "<="
    say(
        f"  {label:<52} {mine:>10,.1f} / {theirs:>10,.1f} = {ratio:5.2f}x  "
        f"(aim {sign} {limit:g}x)  {'MET' if met else 'NOT MET'}"
    )


def _limit_line(label: str, value: float | None, limit: float, unit: str, *, at_most: bool) -> None:
    if value is None:
        say(f"  {label:<52} not measured")
        return
    met = value <= limit if at_most else value >= limit
    sign = "<=" if at_most else ">="
    say(
        f"  {label:<52} {value:>10,.1f} {unit:<6}{'':>17}(aim {sign} {limit:,g} {unit})  "
        f"{'MET' if met else 'NOT MET'}"
    )


def issue_14(systems: list[SystemResults], counts: dict[str, int]) -> None:
    ours, huey = _find(systems, "bgjobs"), _find(systems, "Huey redis")
    if ours is None:
        return
    say("\n== Aims of issue 14 (bgjobs against Huey on Redis in the same run) ==")
    huey = huey or SystemResults("Huey redis")

    def w1(system: SystemResults | None) -> float | None:
        return None if system is None else value_of(system, "w1_incr", Throughput, "per_second")

    _ratio_line("W1 jobs/s, fsync = false: >= 2x Huey Redis", w1(ours), w1(huey), 2, at_least=True)
    fsync = _find(systems, "bgjobs fsync")
    if fsync is not None:
        _ratio_line(
            "W1 jobs/s, fsync = true: >= 1x Huey Redis", w1(fsync), w1(huey), 1, at_least=True
        )
    _ratio_line(
        "W2 submit p50 µs: <= Huey Redis's",
        value_of(ours, "w2", Latency, "p50_us"),
        value_of(huey, "w2", Latency, "p50_us"),
        1,
        at_least=False,
    )
    _limit_line("W2 submit p99", value_of(ours, "w2", Latency, "p99_us"), 1000, "µs", at_most=True)
    _limit_line(
        f"W3 {counts['w3_instant']:,} due at one instant: last start past the drain",
        value_of(ours, "w3_instant", InstantBurst, "overhead_ms"),
        5,
        "ms",
        at_most=True,
    )
    _ratio_line(
        "W5 idle daemon + 2 workers PSS MiB: <= Huey Redis's",
        value_of(ours, "w5", Memory, "pss_mib"),
        value_of(huey, "w5", Memory, "pss_mib"),
        1,
        at_least=False,
    )
    _limit_line(
        f"W7 bulk enqueue of {counts['bulk']:,}",
        value_of(ours, "bulk", Throughput, "per_second"),
        50_000,
        "jobs/s",
        at_most=False,
    )


def issue_12(systems: list[SystemResults]) -> None:
    nodes = [s for s in systems if s.name.startswith("bgjobs-pg")]
    if not nodes:
        return
    peers = [s for s in (_find(systems, "procrastinate"), _find(systems, "pgqueuer")) if s]
    rates = [value_of(p, "w1_incr", Throughput, "per_second") for p in peers]
    fastest = max((r for r in rates if r is not None), default=None)
    plain = _find(systems, "pg insert")
    floor = None if plain is None else value_of(plain, "w2", Latency, "p50_us")
    say("\n== Aims of issue 12 (bgjobs on PostgreSQL, peers and a plain insert in the same run) ==")
    for system in nodes:
        name = system.name
        _ratio_line(
            f"{name} W1 jobs/s: >= 4x the faster PG peer",
            value_of(system, "w1_incr", Throughput, "per_second"),
            fastest,
            4,
            at_least=True,
        )
        for key, what in (("w3_peer", "200 due 2 s on"), ("w3_paced", "paced")):
            _limit_line(
                f"{name} W3 lateness p99, {what}",
                value_of(system, key, Lateness, "p99_ms"),
                10,
                "ms",
                at_most=True,
            )
        for key, what in (("w2", "consuming"), ("w2_quiet", "nothing consuming")):
            _ratio_line(
                f"{name} submit p50 µs ({what}): <= 1.5x plain insert",
                value_of(system, key, Latency, "p50_us"),
                floor,
                1.5,
                at_least=False,
            )
