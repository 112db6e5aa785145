"""The benchmark run: bgjobs, then the original's design and Huey (Redis, SQLite) on the
same workloads, then the side-by-side table, the ratios and the aims."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import tempfile
import time
import types
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any, Final

from bench import aims as issue_aims
from bench import million, original, procs, workloads
from bench.bgjobs_target import BgjobsTarget, Daemon, Workspace
from bench.cluster_runs import cluster_systems, run_cluster, run_plain_insert
from bench.cluster_target import DaemonRefused
from bench.peer_runs import PEERS, run_peer
from bench.peers import pgbase
from bench.phases import Sizes, attempt, run_after, run_all
from bench.report import SystemResults, aims, machine_lines, ratios, say, table
from bench.workloads import Counters

WORKLOADS: Final = ("W1", "W2", "W3", "W4", "W5", "W6", "W7")
SYSTEMS: Final = ("bgjobs", "original", *PEERS, *cluster_systems())
POSTGRESQL: Final = frozenset(
    {"procrastinate", "pgqueuer", *(n for n, (b, _) in cluster_systems().items() if b != "sqlite")}
)
"""The systems on PostgreSQL: with any of them, each round also times a plain insert."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/run.py",
        description="Measure bgjobs on the workloads of peer-benchmarks.md, side by side "
        "with the original's design, Huey, procrastinate and pgqueuer, in interleaved rounds.",
    )
    parser.add_argument("--quick", action="store_true", help="small counts: check it works")
    parser.add_argument(
        "--rounds",
        type=int,
        default=None,
        help="rounds; each runs every system once, in a rotated order (3; --quick: 1)",
    )
    parser.add_argument(
        "--fsync", action="store_true", help="also measure W1-W3 with [daemon] fsync = true"
    )
    parser.add_argument(
        "--only",
        default=",".join(WORKLOADS),
        help="workloads to run, e.g. W1,W2 (W6 = start-up with 1,000,000 scheduled jobs, "
        "W7 = bulk enqueue)",
    )
    parser.add_argument(
        "--systems", default=",".join(SYSTEMS), help=f"systems to run (of {','.join(SYSTEMS)})"
    )
    parser.add_argument("--json", metavar="PATH", help="also write every figure as JSON")
    parser.add_argument(
        "--daemon-code",
        type=Path,
        metavar="DIR",
        help="run every bgjobs daemon (and its workers) from this checkout instead",
    )
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=None,
        metavar="S",
        help="before each system, wait up to S seconds for the machine to be idle "
        "(20; --quick: 0; 0: no)",
    )
    args = parser.parse_args(argv)
    args.only = _pick(parser, args.only, WORKLOADS, "--only")
    args.systems = _pick(parser, args.systems, SYSTEMS, "--systems")
    if args.quiet_wait is None:
        args.quiet_wait = 0.0 if args.quick else 20.0
    if args.rounds is None:
        args.rounds = 1 if args.quick else 3
    if args.rounds < 1:
        parser.error("--rounds: at least 1")
    return args


def _pick(
    parser: argparse.ArgumentParser, text: str, known: tuple[str, ...], flag: str
) -> set[str]:
    chosen = {part.strip() for part in text.split(",") if part.strip()}
    chosen = {part.upper() if part.upper() in known else part for part in chosen}
    unknown = chosen - set(known)
    if unknown:
        parser.error(f"{flag}: unknown {', '.join(sorted(unknown))} (known: {', '.join(known)})")
    return chosen


def _settle(label: str, timeout: float) -> None:
    """Before each system: wait for other processes to quiet down, and say how busy it was."""
    if timeout <= 0:
        return
    busy, waited = procs.wait_for_quiet(timeout=timeout)
    if waited > 1.5 or busy > 0.15:
        state = "quiet" if busy <= 0.15 else "STILL BUSY: figures are skewed"
        say(f"\n(before {label}: machine {100 * busy:.0f}% busy after {waited:.0f} s: {state})")


# bgjobs ------------------------------------------------------------------------------------


def run_bgjobs(
    label: str, *, fsync: bool, sizes: Sizes, only: set[str], counters: Counters, workdir: Path
) -> SystemResults:
    results = SystemResults(label)
    durability = "power loss too (synchronous=FULL)" if fsync else "any process's death"
    results.notes.append(f"acks survive {durability}")
    say(f"\n== {label}: 2 warm workers, fsync={str(fsync).lower()}, dashboard off ==")
    workspace = Workspace("fsync" if fsync else "main", fsync=fsync)
    daemon = Daemon(workspace)
    target: BgjobsTarget | None = None
    try:
        results.record("startup", "start-up, empty store (to first ping)", daemon.wait_ready())
        target = BgjobsTarget(daemon, label)
        # fsync changes neither parallelism (W4) nor memory (W5): not measured twice.
        wanted = only - ({"W4", "W5"} if fsync else set())
        run_all(target, results, sizes=sizes, only=wanted, counters=counters, workdir=workdir)
        if "W1" in only:
            bound = target
            attempt(
                results,
                "w1_noop",
                f"W1 {sizes.w1_large:,} no-op jobs",
                lambda: workloads.w1_noop_throughput(
                    bound, counters, bound.finished, sizes.w1_large, idle=sizes.idle
                ),
            )
        run_after(target, results, sizes=sizes, only=wanted)
    finally:
        if target is not None:
            target.close()
        took = daemon.stop()
        results.record("stop", "stop (SIGTERM to exit)", took if took is not None else "killed")
        workspace.remove()
    return results


def run_million(sizes: Sizes, counters: Counters) -> SystemResults:
    results = SystemResults("bgjobs 1M")
    say(f"\n== W6: bgjobs start-up with {sizes.million:,} scheduled jobs in the store ==")
    try:
        found = million.run(counters, sizes.million, sizes.idle, sizes.million_submits)
    except Exception as exc:  # noqa: BLE001 - a failed W6 is reported; the run goes on
        results.record("w6", "W6", f"FAILED: {exc}")
        return results
    results.figures["w6"] = found
    say(
        f"  {'database made':<38} {found.rows:,} rows inserted in {found.insert_seconds:.2f} s "
        f"(one transaction), {found.database_mib:,.0f} MiB"
    )
    say(f"  {'start-up, empty store (same dir)':<38} {found.empty_startup:.3f} s")
    results.record("w6_startup", f"start-up with {found.rows:,} scheduled", found.startup)
    results.record("w6_daemon", "daemon alone at first ping", found.daemon_at_ready)
    results.record("w6_tree", "daemon + workers at first ping", found.tree_at_ready)
    results.record("w6_idle", f"daemon + workers after {sizes.idle:g} s idle", found.tree_idle)
    if found.submit is not None:
        results.record("w6_submit", "enqueue latency with the backlog", found.submit)
    results.record("w6_stop", "stop (SIGTERM to exit)", found.stop_seconds or "killed")
    return results


# peers ---------------------------------------------------------------------------------------


def run_original(sizes: Sizes, counters: Counters) -> SystemResults:
    results = SystemResults("original")
    results.notes.append("a run_job.py per job (it starts a worker of its own); W2 = its Popen")
    say(
        f"\n== The original's design: `python run_job.py Incr handle KEY` per job, "
        f"{sizes.original} jobs (W1 only), at most {original.MAX_IN_FLIGHT} in flight =="
    )
    workspace = Workspace("orig")
    try:
        found = original.run_w1(workspace, counters, sizes.original, sizes.idle)
        results.record("w1_incr", f"W1 {sizes.original} INCR jobs", found.throughput)
        results.record("w2", "W2 = the Popen call of run_job.py", found.spawn)
        if found.exit_codes_nonzero:
            say(f"  WARNING: {found.exit_codes_nonzero} run_job.py exited non-zero")
    except Exception as exc:  # noqa: BLE001 - reported as the figure; the run goes on
        results.record("w1_incr", "W1", f"FAILED: {exc}")
    finally:
        procs.sweep()  # any run_job.py (or its worker) still alive after a failure
        workspace.remove()
    return results


# the run ---------------------------------------------------------------------------------


def _on_signal(signum: int, frame: types.FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through every finally: nothing is left running


def _jsonable(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    return value


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = Sizes.quick() if args.quick else Sizes()
    if args.daemon_code is not None:
        Daemon.default_code = args.daemon_code.resolve()
        say(f"bgjobs daemons run from {Daemon.default_code}")
    signal.signal(signal.SIGTERM, _on_signal)
    import redis

    client = redis.Redis(host="127.0.0.1", port=6379)
    try:
        redis_version = str(client.info("server")["redis_version"])
    except redis.RedisError as exc:
        say(f"bench: Redis must listen on 127.0.0.1:6379 (completion counters): {exc}")
        return 2
    say("bgjobs benchmark (workloads of shared/reference/peer-benchmarks.md)")
    for line in machine_lines(redis_version):
        say(line)
    if args.quick:
        say("QUICK RUN: small counts, figures are not comparable")
    counters = Counters(client, f"bgjobs-bench:{procs.MARKER[:12]}")
    workdir = Path(tempfile.mkdtemp(prefix="bgb-work-", dir="/tmp"))
    began = time.perf_counter()
    try:
        collected, startup_1m = _run_systems(args, sizes, counters, workdir)
        _summary(collected, startup_1m, sizes, args.rounds)
        if args.json:
            data = {
                r.name: [{k: _jsonable(v) for k, v in figures.items()} for figures in r.rounds]
                for r in collected
            }
            Path(args.json).write_text(json.dumps(data, indent=2, default=str))
    finally:
        counters.cleanup()
        leftovers = procs.sweep()
        if leftovers:
            say(f"bench: killed {len(leftovers)} leftover process(es): {leftovers}")
        dropped, failed = pgbase.drop_leftovers()
        if dropped:
            say(f"bench: dropped leftover schema(s) {', '.join(dropped)}")
        if failed:
            say(f"bench: COULD NOT DROP schema(s) {'; '.join(failed)}: drop them by hand")
        shutil.rmtree(workdir, ignore_errors=True)
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
        say(f"\nwhole run: {time.perf_counter() - began:.0f} s; load average at the end {load}")
    return 0


def _interleaved(args: argparse.Namespace) -> list[str]:
    """The systems that take part in every round, in SYSTEMS' order; with a PostgreSQL
    system, the plain insert too (issue 12's floor), and without a server, none of them."""
    chosen = [name for name in SYSTEMS if name in args.systems and name != "original"]
    if args.fsync and "bgjobs" in chosen:
        chosen.insert(chosen.index("bgjobs") + 1, "bgjobs fsync")
    if any(name in POSTGRESQL for name in chosen):
        reason = pgbase.unavailable()
        if reason is not None:
            say(f"\nPostgreSQL systems skipped: {reason}")
            return [name for name in chosen if name not in POSTGRESQL]
        chosen.append("pg insert")
    return chosen


def _run_one(name: str, sizes: Sizes, common: dict[str, Any]) -> SystemResults:
    if name in ("bgjobs", "bgjobs fsync"):
        return run_bgjobs(name, fsync=name.endswith("fsync"), sizes=sizes, **common)
    if name in PEERS:
        return run_peer(name, sizes=sizes, **common)
    if name == "pg insert":
        return run_plain_insert(sizes.w2)
    return run_cluster(name, sizes=sizes, **common)


def _run_systems(
    args: argparse.Namespace, sizes: Sizes, counters: Counters, workdir: Path
) -> tuple[list[SystemResults], float | None]:
    """Round after round, every system once, the order rotated each round so that no
    system always follows the same one; the original's design and W6 once, after."""
    common: dict[str, Any] = {"only": args.only, "counters": counters, "workdir": workdir}
    systems = _interleaved(args)
    merged: dict[str, SystemResults] = {}
    refused: set[str] = set()
    for number in range(args.rounds):
        shift = number % max(1, len(systems))
        for name in systems[shift:] + systems[:shift]:
            if name in refused:
                continue
            _settle(name, args.quiet_wait)
            say(f"\n-- round {number + 1}/{args.rounds}: {name}")
            try:
                result = _run_one(name, sizes, common)
            except DaemonRefused as exc:
                say(f"{name}: not available (the daemon refuses the PostgreSQL backend: {exc})")
                refused.add(name)
                continue
            except Exception as exc:  # noqa: BLE001 - one system's failure, not the run's
                result = SystemResults(name)
                result.record("error", f"{name} FAILED", str(exc).strip())
            merged.setdefault(name, SystemResults(result.name)).absorb(result)
    collected = [merged[name] for name in systems if name in merged]
    startup_1m: float | None = None
    if "bgjobs" in args.systems and "W6" in args.only:
        _settle("W6", args.quiet_wait)
        startup_1m = run_million(sizes, counters).get("w6_startup", float)
    if "original" in args.systems and "W1" in args.only:
        _settle("original", args.quiet_wait)
        once = SystemResults("original")
        once.absorb(run_original(sizes, counters))
        collected.append(once)
    for name in sorted(refused):
        say(f"\n{name}: not available (daemon refuses the PostgreSQL backend)")
    return collected, startup_1m


def _summary(
    collected: list[SystemResults], startup_1m: float | None, sizes: Sizes, rounds: int
) -> None:
    if not collected:
        return
    counts = _counts(sizes)
    say(f"\n== Side by side: medians of {rounds} interleaved round(s) (— = not measured) ==")
    table(collected, counts)
    if any(system.name == "original" for system in collected):
        say(f"* the original's design ran {sizes.original} jobs, once, not {sizes.w1_small:,}")
    for system in collected:
        for note in system.notes:
            say(f"  {system.name}: {note}")
    ours = next((r for r in collected if r.name == "bgjobs"), None)
    peers = [r for r in collected if not r.name.startswith("bgjobs")]
    if ours is not None and peers:
        say("\n== Ratios bgjobs / peer ==")
        ratios(ours, peers, counts)
    issue_aims.issue_14(collected, counts)
    issue_aims.issue_12(collected)
    for system in collected:
        if system.name in ("bgjobs", "bgjobs fsync"):
            say(f"\n== Aims of issue 3 ({system.name}; {', '.join(system.notes)}) ==")
            # W6 ran with the default settings: it belongs to the plain bgjobs row only.
            aims(system, startup_1m if system.name == "bgjobs" else None, counts)


def _counts(sizes: Sizes) -> dict[str, Any]:
    counts = asdict(sizes)
    counts["pace_ms"] = sizes.pace * 1000
    counts["w4_ideal"] = sizes.w4 * 0.5 / 2
    return counts
