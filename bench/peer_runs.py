"""The peers' passes: Huey (Redis, SQLite), procrastinate and pgqueuer, each started as
real processes, measured on the workloads and stopped."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from bench import procs, workloads
from bench.phases import Sizes, run_after, run_all
from bench.report import SystemResults, say
from bench.workloads import Counters


class Peer(workloads.Target, Protocol):
    def stop(self) -> float | None:
        """Its processes asked to stop; how long that took, or None if killed."""
        ...

    def close(self) -> None: ...


def start_huey(kind: str, workdir: Path) -> Peer:
    from bench.peers import huey_target

    spec = "redis" if kind == "redis" else f"sqlite:{workdir / f'huey-{time.time_ns()}.db'}"
    queue = f"bgjobs-bench-{procs.MARKER[:8]}-{kind}"
    consumer = huey_target.HueyConsumer(workdir, spec, queue, workers=2)
    try:
        return huey_target.HueyTarget(f"Huey {kind}", consumer, huey_target.load_app(spec, queue))
    except BaseException:
        consumer.stop()
        raise


def start_procrastinate(workdir: Path) -> Peer:
    from bench.peers.procrastinate_target import ProcrastinateTarget

    return ProcrastinateTarget(workdir)


def start_pgqueuer(workdir: Path) -> Peer:
    from bench.peers.pgqueuer_target import PgqueuerTarget

    return PgqueuerTarget(workdir)


PEERS: dict[str, tuple[str, str, Callable[[Path], Peer]]] = {
    # system name: (row name, how it runs and what its acknowledgement survives, start)
    "huey-redis": (
        "Huey redis",
        "huey_consumer -w 2 -k process; Redis without persistence: acks not durable",
        lambda workdir: start_huey("redis", workdir),
    ),
    "huey-sqlite": (
        "Huey sqlite",
        "huey_consumer -w 2 -k process; SqliteHuey defaults: WAL, synchronous=FULL",
        lambda workdir: start_huey("sqlite", workdir),
    ),
    "procrastinate": (
        "procrastinate",
        "2 worker processes x --concurrency 1, LISTEN/NOTIFY, 5 s polling; PostgreSQL "
        "synchronous_commit as the server has it",
        start_procrastinate,
    ),
    "pgqueuer": (
        "pgqueuer",
        "1 process, batch_size 1, max_concurrent_tasks 2, bodies in asyncio.to_thread",
        start_pgqueuer,
    ),
}


def run_peer(
    system: str, *, sizes: Sizes, only: set[str], counters: Counters, workdir: Path
) -> SystemResults:
    name, note, start = PEERS[system]
    results = SystemResults(name)
    results.notes.append(note)
    say(f"\n== {name}: {note} ==")
    target: Peer | None = None
    try:
        started = time.perf_counter()
        target = start(workdir)
        key = counters.fresh("ready")
        target.incr(key)
        counters.wait(key, 1, 60)
        results.record("startup", "start to first job done", time.perf_counter() - started)
        run_all(target, results, sizes=sizes, only=only, counters=counters, workdir=workdir)
        run_after(target, results, sizes=sizes, only=only)
    except Exception as exc:  # noqa: BLE001 - a peer that fails is reported, not fatal
        results.record("error", "error", f"FAILED: {exc}")
    finally:
        if target is not None:
            took = target.stop()
            target.close()
            results.record("stop", "stop", took if took is not None else "killed")
    return results
