"""Racers on one store (an SQLite file, a PostgreSQL schema), each with its own connection,
run as threads of this process or as processes of their own (the 'spawn' context: a fresh
interpreter, no inherited connection). A racer waits at a shared gate so that all start
together, works in small transactions as a node does, and returns what it did as JSON-able
values. A racer never runs past its deadline (wall-clock seconds: shared by processes)."""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

from bgjobd.store.base import FinishedAttempt, Store, UniqueTaken
from bgjobs.model import JobInfo, JobState, Outcome
from bgjobs.rates import Rate
from tests.store.support import StoreAddress, new_job, node, open_store

MODES = ("threads", "processes")
GATE_SECONDS = 20.0
"""How long a racer waits for the others at the gate (interpreters start slowly on a
loaded machine)."""


class Gate(Protocol):
    def wait(self, timeout: float | None = None) -> int: ...


Racer = Callable[..., Any]
"""A racer: called with the gate, then its own arguments."""


class Overdue(Exception):
    """A racer reached its deadline with work left."""


def _check(deadline: float, doing: str) -> None:
    if time.time() > deadline:
        raise Overdue(f"{doing}: deadline passed")


# the racers ----------------------------------------------------------------------------------


def claim_and_finish(
    gate: Gate,
    address: StoreAddress,
    owner: str,
    limits: dict[str, int],
    hold: float,
    deadline: float,
) -> dict[str, list[Any]]:
    """Claim jobs and finish them (fenced by owner) until none is left queued, in small
    transactions as a node's loop makes them: each ends the job held (if any) and claims
    the next. Returns the ids claimed and, per job, (class, claimed, finished): monotonic
    times read while holding the store's write lock, so that two jobs of a class that the
    store ran one after the other never have overlapping intervals. `hold`: seconds that a
    job "runs", between its claim's commit and its end's transaction."""
    store = open_store(address)
    ids: list[int] = []
    intervals: list[tuple[str, float, float]] = []
    held: tuple[JobInfo, float] | None = None
    try:
        gate.wait(GATE_SECONDS)
        while True:
            _check(deadline, f"{owner} claiming")
            if held is not None:
                running, claimed = held
                end = FinishedAttempt(
                    running.attempts, Outcome.SUCCEEDED, time.time(), hold, owner=owner
                )
                store.finish_attempt(running.id, end, JobState.SUCCEEDED, result=owner)
                intervals.append((running.class_name, claimed, time.monotonic()))
                held = None
            job = store.claim_next(owner, os.getpid(), time.time(), limits)
            if job is None:
                left = store.counts()[JobState.QUEUED]
                store.commit()
                if not left:
                    break
                time.sleep(0.001)  # the queued jobs' classes are full: poll again
                continue
            held = job, time.monotonic()
            store.commit()
            ids.append(job.id)
            if hold:
                time.sleep(hold)
    finally:
        store.close()
    return {"ids": ids, "intervals": intervals}


def claim_at_rate(
    gate: Gate,
    address: StoreAddress,
    owner: str,
    rates: dict[str, tuple[int, float]],
    limits: dict[str, int],
    deadline: float,
) -> list[tuple[str, float]]:
    """Claim jobs under rate limits (class -> (starts, window seconds)) and finish each at
    once, until none is left queued. Returns (class and first param, start time as the
    store recorded it) per job."""
    store = open_store(address)
    by_class = {name: Rate(starts, seconds) for name, (starts, seconds) in rates.items()}
    started: list[tuple[str, float]] = []
    try:
        gate.wait(GATE_SECONDS)
        while True:
            _check(deadline, f"{owner} claiming at a rate")
            job = store.claim_next(owner, os.getpid(), time.time(), limits, by_class)
            if job is None:
                left = store.counts()[JobState.QUEUED]
                store.commit()
                if not left:
                    break
                time.sleep(0.001)  # the queued jobs wait for their rate: poll again
                continue
            assert job.started_at is not None
            end = FinishedAttempt(job.attempts, Outcome.SUCCEEDED, time.time(), 0.0, owner=owner)
            store.finish_attempt(job.id, end, JobState.SUCCEEDED, result=owner)
            store.commit()
            started.append((f"{job.class_name}:{job.params[0]}", job.started_at.timestamp()))
    finally:
        store.close()
    return started


def add_unique(gate: Gate, address: StoreAddress, keys: list[str]) -> list[tuple[int, bool]]:
    """For each key in turn (all racers together): submit a unique job with that key.
    Returns (job id, whether this racer's submit stored it) per key."""
    store = open_store(address)
    outcomes: list[tuple[int, bool]] = []
    try:
        for key in keys:
            gate.wait(GATE_SECONDS)
            try:
                outcomes.append((store.add([new_job("Unique", unique_key=key)])[0], True))
            except UniqueTaken as taken:
                outcomes.append((taken.job_id, False))
            store.commit()
    finally:
        store.close()
    return outcomes


def expire_and_reclaim(gate: Gate, address: StoreAddress, owner: str, rounds: int) -> list[str]:
    """Round after round: add a node that is dead already, running a job, then expire dead
    nodes and reclaim the running jobs of those this racer was given (their attempt ends
    as interrupted, unfenced: a node reclaimed twice would show two). Returns the names."""
    store = open_store(address)
    expired: list[str] = []
    try:
        gate.wait(GATE_SECONDS)
        for round_number in range(rounds):
            add_dead_node(store, f"{owner}-{round_number}")
            store.commit()
            expired += expire_and_reclaim_once(store)
            store.commit()
        expired += expire_and_reclaim_once(store)
        store.commit()
    finally:
        store.close()
    return expired


def add_dead_node(store: Store, name: str) -> None:
    """A node whose lease has just ended, with one job running."""
    job_id = store.add([new_job("Reclaimed")])[0]
    assert store.claim(job_id, name, 1, time.time()) is not None
    assert store.register_node(node(name, lease=-1.0)) is None


def expire_and_reclaim_once(store: Store) -> list[str]:
    names = store.expire_nodes(time.time())
    for name in names:
        for job in store.running(name):
            end = FinishedAttempt(job.attempts, Outcome.INTERRUPTED, time.time(), 0.0)
            store.finish_attempt(job.id, end, JobState.QUEUED)
    return names


# running them --------------------------------------------------------------------------------


def race(
    mode: str,
    racer: Racer,
    arguments: Sequence[tuple[Any, ...]],
    *,
    timeout: float,
    workdir: Path,
    processes: int | None = None,
) -> list[Any]:
    """Run one racer per argument tuple, each in a thread of its own; in mode "processes"
    these threads are spread over `processes` processes (default: one each). Their
    results in order, as JSON gives them back. Fails if one fails or any is still running
    after `timeout`. A racer process leaves its results in a file in `workdir`."""
    if mode == "threads":
        gate = threading.Barrier(len(arguments))
        results: list[Any] = json.loads(json.dumps(in_threads(racer, gate, arguments, timeout)))
        return results  # as a process's would be: tuples become lists
    if mode == "processes":
        return _in_processes(racer, arguments, timeout, workdir, processes or len(arguments))
    raise ValueError(mode)


def in_threads(
    racer: Racer, gate: Gate, arguments: Sequence[tuple[Any, ...]], timeout: float
) -> list[Any]:
    deadline = time.monotonic() + timeout
    with ThreadPoolExecutor(len(arguments)) as pool:
        futures = [pool.submit(racer, gate, *args) for args in arguments]
        # Each racer ends by its own deadline (or the gate's), so the pool's exit returns.
        return [future.result(max(0.0, deadline - time.monotonic())) for future in futures]


def _in_processes(
    racer: Racer, arguments: Sequence[tuple[Any, ...]], timeout: float, workdir: Path, count: int
) -> list[Any]:
    context = multiprocessing.get_context("spawn")
    gate = context.Barrier(len(arguments))  # its parties: every racer, in whichever process
    shares = [list(range(len(arguments)))[first::count] for first in range(count)]
    reports = [workdir / f"racers-{n}.json" for n in range(count)]
    processes = [
        context.Process(
            target=report_to,
            args=(report, racer, gate, [arguments[n] for n in share], timeout),
            daemon=True,
        )
        for report, share in zip(reports, shares, strict=True)
    ]
    deadline = time.monotonic() + timeout
    try:
        for process in processes:
            process.start()
        for process in processes:
            process.join(max(0.0, deadline - time.monotonic()))
        late = [process.pid for process in processes if process.is_alive()]
        assert not late, f"racer processes {late} still running after {timeout}s"
        failed = {process.pid: process.exitcode for process in processes if process.exitcode}
        assert not failed, f"racer processes failed {failed}:\n{_failed_racers(reports)}"
    finally:
        for process in processes:
            if process.is_alive():
                process.kill()
                process.join(5)
    results: list[Any] = [None] * len(arguments)
    for report, share in zip(reports, shares, strict=True):
        for n, result in zip(share, json.loads(report.read_text()), strict=True):
            results[n] = result
    return results


def _failed_racers(reports: list[Path]) -> str:
    """The errors that racer processes left in their reports."""
    errors = []
    for report in reports:
        with contextlib.suppress(FileNotFoundError, json.JSONDecodeError):
            errors.append(json.loads(report.read_text())["error"])
    return "\n".join(errors)


def report_to(
    report: Path, racer: Racer, gate: Gate, arguments: list[tuple[Any, ...]], timeout: float
) -> None:
    """A racer process's body: run its racers in threads, leave their results in `report`
    (or the first error, which fails the process too)."""
    try:
        results = in_threads(racer, gate, arguments, timeout)
    except BaseException:
        report.write_text(json.dumps({"error": traceback.format_exc()}))
        raise
    report.write_text(json.dumps(results))
