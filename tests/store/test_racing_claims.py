"""Racers on one store (each backend), each with its own connection, as threads and as processes:
no job is claimed twice or lost, a class's limit holds across them, racing submitters of
one unique job get one job, and each dead node is reclaimed by one racer only."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from bgjobd.store.base import JobQuery
from bgjobs.model import JobState, Outcome, Priority
from tests.store import racers
from tests.store.support import StoreAddress, address_of, new_job, open_store

JOBS = 5_000
"""Per mode: 10,000 claims in all, in about 10 s on two busy cores (both modes)."""
RACERS = 4
PROCESSES = 2
"""For the races other than the claims': their racers in this many processes (threads in
each), so that fewer interpreters start."""
SECONDS = 60.0
"""A racer's deadline: far beyond what a race takes, a bound on a hung one."""
PRIORITIES = (Priority.HIGH, Priority.MEDIUM, Priority.LOW)


@pytest.fixture(params=racers.MODES)
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def address(backend_name: str, tmp_path: Path) -> StoreAddress:
    """The test's store, its schema written before the racers open it."""
    where = address_of(backend_name, tmp_path)
    open_store(where).close()
    return where


def fill(address: StoreAddress, classes: dict[str, int]) -> list[int]:
    """Queue that many jobs of each class, interleaved, of mixed priorities."""
    store = open_store(address)
    names = [
        name for n in range(max(classes.values())) for name, count in classes.items() if n < count
    ]
    ids = [
        store.add([new_job(name, priority=PRIORITIES[n % 3], params=[n])])[0]
        for n, name in enumerate(names)
    ]
    store.commit()
    store.close()
    return ids


def claim_race(
    mode: str,
    address: StoreAddress,
    workdir: Path,
    limits: dict[str, int],
    hold: float,
    processes: int = RACERS,
) -> list[dict[str, list[Any]]]:
    deadline = time.time() + SECONDS
    arguments = [(address, f"node-{n}", limits, hold, deadline) for n in range(RACERS)]
    return racers.race(
        mode,
        racers.claim_and_finish,
        arguments,
        timeout=SECONDS + 10,
        workdir=workdir,
        processes=processes,
    )


def most_at_once(intervals: list[tuple[float, float]]) -> int:
    """The most intervals that overlap at one moment."""
    # At equal times an end comes before a start: (t, -1) sorts before (t, 1).
    edges = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    running = most = 0
    for _, step in edges:
        running += step
        most = max(most, running)
    return most


def test_every_job_is_claimed_exactly_once(
    mode: str, address: StoreAddress, tmp_path: Path
) -> None:
    job_ids = fill(address, {"Alpha": JOBS // 2, "Beta": JOBS - JOBS // 2})
    reports = claim_race(mode, address, tmp_path, {}, 0.0)

    claimed = [job_id for report in reports for job_id in report["ids"]]
    doubled = [job_id for job_id, times in Counter(claimed).items() if times > 1]
    assert not doubled, f"claimed more than once: {doubled[:20]}"
    assert sorted(claimed) == job_ids
    assert sum(1 for report in reports if report["ids"]) >= 2, "the racers did not race"

    store = open_store(address)
    try:
        counts = store.counts()
        assert counts[JobState.SUCCEEDED] == JOBS
        assert sum(counts.values()) == JOBS
        jobs, _ = store.search(JobQuery(limit=JOBS))
        claimer = {
            job_id: f"node-{n}" for n, report in enumerate(reports) for job_id in report["ids"]
        }
        # One attempt each, ended by the racer that claimed it (its fenced end was taken).
        assert {job.id: (job.attempts, job.result) for job in jobs} == {
            job_id: (1, owner) for job_id, owner in claimer.items()
        }
    finally:
        store.close()


def test_a_limit_holds_across_racers(mode: str, address: StoreAddress, tmp_path: Path) -> None:
    """Each racer keeps its jobs a moment, so that a limit not honoured would show as
    intervals of one class overlapping (claimed and finished: times read while holding
    the store's write lock, see `racers.claim_and_finish`)."""
    limits = {"One": 1, "Two": 2}
    fill(address, {"One": 60, "Two": 60, "Free": 60})
    reports = claim_race(mode, address, tmp_path, limits, 0.003, PROCESSES)

    intervals: dict[str, list[tuple[float, float]]] = {"One": [], "Two": [], "Free": []}
    for report in reports:
        for class_name, claimed, finished in report["intervals"]:
            intervals[class_name].append((claimed, finished))
    assert {name: len(spans) for name, spans in intervals.items()} == {
        "One": 60,
        "Two": 60,
        "Free": 60,
    }
    assert most_at_once(intervals["One"]) == 1
    assert most_at_once(intervals["Two"]) <= 2
    # The racers did run jobs side by side: an unlimited class overlaps with itself.
    assert most_at_once(intervals["Free"]) >= 2


def test_racing_submitters_of_one_unique_job_get_one_job(
    mode: str, address: StoreAddress, tmp_path: Path
) -> None:
    keys = [f"report:{n}" for n in range(10)]
    outcomes = racers.race(
        mode,
        racers.add_unique,
        [(address, keys)] * 20,
        timeout=SECONDS,
        workdir=tmp_path,
        processes=PROCESSES,  # twenty interpreters would take long to start
    )

    store = open_store(address)
    try:
        for n, key in enumerate(keys):
            given = [racer[n] for racer in outcomes]
            stored = {job_id for job_id, _ in given}
            assert len(stored) == 1, f"{key}: {sorted(stored)}"
            assert sum(added for _, added in given) == 1, f"{key}: {given}"
            assert store.find_live_unique(key) == stored.pop()
        assert store.counts()[JobState.QUEUED] == len(keys)
    finally:
        store.close()


def test_each_dead_node_is_reclaimed_once(mode: str, address: StoreAddress, tmp_path: Path) -> None:
    store = open_store(address)
    for n in range(40):  # dead before the race, and more added by the racers while it lasts
        racers.add_dead_node(store, f"early-{n}")
    store.commit()
    store.close()
    rounds = 40
    reports = racers.race(
        mode,
        racers.expire_and_reclaim,
        [(address, f"racer-{n}", rounds) for n in range(RACERS)],
        timeout=SECONDS,
        workdir=tmp_path,
        processes=PROCESSES,
    )

    expired = Counter(name for report in reports for name in report)
    assert [name for name, times in expired.items() if times > 1] == []
    assert set(expired) == {f"early-{n}" for n in range(40)} | {
        f"racer-{n}-{r}" for n in range(RACERS) for r in range(rounds)
    }
    store = open_store(address)
    try:
        assert store.nodes() == []
        found, total = store.search(JobQuery(limit=1000))
        assert total == 40 + RACERS * rounds
        jobs = [store.get(job.id) for job in found]
        # Each node's running job was reclaimed once: one interrupted attempt, queued again.
        assert {
            (job.state, job.attempts, tuple(a.outcome for a in job.history))
            for job in jobs
            if job is not None
        } == {(JobState.QUEUED, 1, (Outcome.INTERRUPTED,))}
    finally:
        store.close()
