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
from collections.abc import Callable
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path
from typing import Any, Final

from bench import million, original, procs, workloads
from bench.bgjobs_target import BgjobsTarget, Daemon, Workspace
from bench.report import SystemResults, aims, machine_lines, ratios, say, table
from bench.workloads import Counters

WORKLOADS: Final = ("W1", "W2", "W3", "W4", "W5", "W6")
SYSTEMS: Final = ("bgjobs", "original", "huey-redis", "huey-sqlite")


@dataclass(frozen=True)
class Sizes:
    w1_small: int = 2_000
    w1_large: int = 10_000
    w2: int = 1_000
    w3: int = 1_000
    w3_peer: int = 200
    w3_paced: int = 200
    pace: float = 0.01
    w4: int = 20
    idle: float = 3.0
    million: int = 1_000_000
    million_submits: int = 1_000
    original: int = 200

    @classmethod
    def quick(cls) -> Sizes:
        return cls(
            w1_small=200,
            w1_large=1_000,
            w2=200,
            w3=100,
            w3_peer=0,
            w3_paced=50,
            w4=6,
            idle=1.0,
            million=50_000,
            million_submits=50,
            original=20,
        )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/run.py",
        description="Measure bgjobs on the workloads of peer-benchmarks.md, side by side "
        "with the original's design and Huey.",
    )
    parser.add_argument("--quick", action="store_true", help="small counts: check it works")
    parser.add_argument(
        "--fsync", action="store_true", help="also measure W1-W3 with [daemon] fsync = true"
    )
    parser.add_argument(
        "--only",
        default=",".join(WORKLOADS),
        help="workloads to run, e.g. W1,W2 (W6 = start-up with 1,000,000 scheduled jobs)",
    )
    parser.add_argument(
        "--systems", default=",".join(SYSTEMS), help=f"systems to run (of {','.join(SYSTEMS)})"
    )
    parser.add_argument("--json", metavar="PATH", help="also write every figure as JSON")
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=20.0,
        metavar="S",
        help="before each system, wait up to S seconds for the machine to be idle (20; 0: no)",
    )
    args = parser.parse_args(argv)
    args.only = _pick(parser, args.only, WORKLOADS, "--only")
    args.systems = _pick(parser, args.systems, SYSTEMS, "--systems")
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


def _attempt(results: SystemResults, key: str, label: str, measure: Callable[[], Any]) -> None:
    """Measure one figure; a failure is recorded and printed, and the run goes on."""
    try:
        value = measure()
    except Exception as exc:  # noqa: BLE001 - any failure is one figure's, not the run's
        value = f"FAILED: {exc}"
    results.record(key, label, value)


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
        _run_all(target, results, sizes=sizes, only=wanted, counters=counters, workdir=workdir)
        if "W1" in only:
            bound = target
            _attempt(
                results,
                "w1_noop",
                f"W1 {sizes.w1_large:,} no-op jobs",
                lambda: workloads.w1_noop_throughput(
                    bound, counters, bound.finished, sizes.w1_large, idle=sizes.idle
                ),
            )
        if "W5" in only and not fsync:
            bound = target
            _attempt(
                results,
                "w5_after",
                f"W5 memory, {sizes.idle:g} s idle after all",
                lambda: workloads.w5_idle_memory(bound, sizes.idle),
            )
    finally:
        if target is not None:
            target.close()
        took = daemon.stop()
        results.record("stop", "stop (SIGTERM to exit)", took if took is not None else "killed")
        workspace.remove()
    return results


def _run_all(
    target: workloads.Target,
    results: SystemResults,
    *,
    sizes: Sizes,
    only: set[str],
    counters: Counters,
    workdir: Path,
) -> None:
    """W5 (fresh), W2, W1 (INCR), W3 (1,000, the peers' 200, and paced), W4: in that order, so
    W5 sees the processes as started and W1 starts after its idle pause."""
    if "W5" in only:
        _attempt(
            results,
            "w5",
            f"W5 idle memory ({sizes.idle:g} s idle)",
            lambda: workloads.w5_idle_memory(target, sizes.idle),
        )
    if "W2" in only:
        _attempt(
            results,
            "w2",
            f"W2 enqueue latency ({sizes.w2:,} calls)",
            lambda: workloads.w2_submit_latency(target, counters, sizes.w2),
        )
        _attempt(
            results,
            "w2_quiet",
            f"W2, nothing consuming ({sizes.w2:,} calls)",
            lambda: workloads.w2_quiet_latency(target, sizes.w2),
        )
    if "W1" in only:
        _attempt(
            results,
            "w1_incr",
            f"W1 {sizes.w1_small:,} INCR jobs",
            lambda: workloads.w1_throughput(target, counters, sizes.w1_small, sizes.idle),
        )
    if "W3" in only:
        _attempt(
            results,
            "w3",
            f"W3 {sizes.w3:,} jobs due in 2 s",
            lambda: workloads.w3_lateness(target, workdir, sizes.w3),
        )
        if sizes.w3_peer:
            _attempt(
                results,
                "w3_peer",
                f"W3 {sizes.w3_peer:,} jobs due in 2 s (peers' count)",
                lambda: workloads.w3_lateness(target, workdir, sizes.w3_peer),
            )
        if sizes.w3_paced:
            _attempt(
                results,
                "w3_paced",
                f"W3 {sizes.w3_paced:,} due in 2 s, 1 per {sizes.pace * 1000:g} ms",
                lambda: workloads.w3_lateness(target, workdir, sizes.w3_paced, pace=sizes.pace),
            )
    if "W4" in only:
        _attempt(
            results,
            "w4",
            f"W4 {sizes.w4} jobs sleeping 0.5 s",
            lambda: workloads.w4_parallelism(target, counters, sizes.w4, 0.5),
        )


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


def run_huey(
    kind: str, *, sizes: Sizes, only: set[str], counters: Counters, workdir: Path
) -> SystemResults:
    from bench.peers import huey_target

    name = f"Huey {kind}"
    results = SystemResults(name)
    spec = "redis" if kind == "redis" else f"sqlite:{workdir / 'huey.db'}"
    queue = f"bgjobs-bench-{procs.MARKER[:8]}-{kind}"
    say(f"\n== {name}: huey_consumer -w 2 -k process (scheduler polls every 1 s) ==")
    if kind == "sqlite":
        results.notes.append("SqliteHuey defaults: WAL, synchronous=FULL (fsync per enqueue)")
    else:
        results.notes.append("Redis without persistence: acks not durable")
    consumer = huey_target.HueyConsumer(workdir, spec, queue, workers=2)
    target: huey_target.HueyTarget | None = None
    try:
        app = huey_target.load_app(spec, queue)
        target = huey_target.HueyTarget(name, consumer, app)
        key = counters.fresh("huey-ready")
        started = time.perf_counter()
        target.incr(key)
        try:
            counters.wait(key, 1, 60)
        except workloads.WorkloadFailed:
            raise RuntimeError(f"the Huey consumer ran no job:\n{consumer.tail()}") from None
        results.record("startup", "consumer start to first job done", time.perf_counter() - started)
        _run_all(target, results, sizes=sizes, only=only, counters=counters, workdir=workdir)
        if "W5" in only:
            bound = target
            _attempt(
                results,
                "w5_after",
                f"W5 memory, {sizes.idle:g} s idle after all",
                lambda: workloads.w5_idle_memory(bound, sizes.idle),
            )
    except Exception as exc:  # noqa: BLE001 - a peer that fails is reported, not fatal
        results.record("error", "error", f"FAILED: {exc}")
    finally:
        took = consumer.stop()
        if target is not None:
            target.close()
        results.record("stop", "stop (SIGINT to exit)", took if took is not None else "killed")
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
        _summary(collected, startup_1m, sizes)
        if args.json:
            data = {r.name: {k: _jsonable(v) for k, v in r.figures.items()} for r in collected}
            Path(args.json).write_text(json.dumps(data, indent=2, default=str))
    finally:
        counters.cleanup()
        leftovers = procs.sweep()
        if leftovers:
            say(f"bench: killed {len(leftovers)} leftover process(es): {leftovers}")
        shutil.rmtree(workdir, ignore_errors=True)
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
        say(f"\nwhole run: {time.perf_counter() - began:.0f} s; load average at the end {load}")
    return 0


def _run_systems(
    args: argparse.Namespace, sizes: Sizes, counters: Counters, workdir: Path
) -> tuple[list[SystemResults], float | None]:
    collected: list[SystemResults] = []
    startup_1m: float | None = None
    common: dict[str, Any] = {
        "sizes": sizes,
        "only": args.only,
        "counters": counters,
        "workdir": workdir,
    }
    wait = args.quiet_wait
    if "bgjobs" in args.systems:
        _settle("bgjobs", wait)
        collected.append(run_bgjobs("bgjobs", fsync=False, **common))
        if args.fsync:
            _settle("bgjobs fsync", wait)
            collected.append(run_bgjobs("bgjobs fsync", fsync=True, **common))
        if "W6" in args.only:
            _settle("W6", wait)
            startup_1m = run_million(sizes, counters).get("w6_startup", float)
    if "original" in args.systems and "W1" in args.only:
        _settle("original", wait)
        collected.append(run_original(sizes, counters))
    for kind in ("redis", "sqlite"):
        if f"huey-{kind}" in args.systems:
            _settle(f"huey-{kind}", wait)
            collected.append(run_huey(kind, **common))
    return collected, startup_1m


def _summary(collected: list[SystemResults], startup_1m: float | None, sizes: Sizes) -> None:
    if not collected:
        return
    counts = _counts(sizes)
    say("\n== Side by side (— = not measured) ==")
    table(collected, counts)
    say(f"* the original's design ran {sizes.original} jobs, not {sizes.w1_small:,}")
    for system in collected:
        for note in system.notes:
            say(f"  {system.name}: {note}")
    ours = next((r for r in collected if r.name == "bgjobs"), None)
    peers = [r for r in collected if not r.name.startswith("bgjobs")]
    if ours is not None and peers:
        say("\n== Ratios bgjobs / peer ==")
        ratios(ours, peers, counts)
    for system in collected:
        if system.name.startswith("bgjobs"):
            say(f"\n== Aims of issue 3 ({system.name}; {', '.join(system.notes)}) ==")
            # W6 ran with the default settings: it belongs to the plain bgjobs row only.
            aims(system, startup_1m if system.name == "bgjobs" else None, counts)


def _counts(sizes: Sizes) -> dict[str, Any]:
    counts = asdict(sizes)
    counts["pace_ms"] = sizes.pace * 1000
    counts["w4_ideal"] = sizes.w4 * 0.5 / 2
    return counts
