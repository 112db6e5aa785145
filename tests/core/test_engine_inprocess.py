"""The core in-process: the engine wired as the daemon wires it (a real SQLite store, the
journal's group commit, a pool of real worker processes), with no socket and no daemon
process. Slot accounting and limits of the dispatcher, the intake's fast path, uniqueness
and refusals, and the throughput window."""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bgjobd.attempts import AttemptResult, Attempts
from bgjobd.engine import Engine
from bgjobd.events import EventHub
from bgjobd.intake import Stored
from bgjobd.joblog import JobLog
from bgjobd.journal import Journal
from bgjobd.pool import WorkerPool
from bgjobd.store import sqlite as sqlite_store
from bgjobd.store.sqlite import SQLiteStore
from bgjobd.throughput import FinishCounter
from bgjobs.config import load_config
from bgjobs.errors import RefusedError
from bgjobs.model import JobInfo, JobSpec, JobState
from tests.support.workspace import Workspace


@dataclass
class Core:
    engine: Engine
    store: SQLiteStore
    errors: list[str]
    ran: list[tuple[JobInfo, AttemptResult, int]] = field(default_factory=list)
    """Every attempt's end: the job, how it ended, and the slots busy at that moment."""

    async def submit(self, *specs: JobSpec) -> Stored:
        stored: asyncio.Future[Stored | BaseException] = asyncio.get_running_loop().create_future()
        self.engine.submit(list(specs), stored.set_result)
        outcome = await stored
        assert not isinstance(outcome, BaseException), outcome
        return outcome

    async def until(self, condition: Callable[[], bool], timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, "timed out"
            await asyncio.sleep(0.02)

    def finished(self) -> int:
        counts = self.store.counts()
        return sum(counts[state] for state in JobState if state.is_final)


@asynccontextmanager
async def core(workspace: Workspace, extra: dict[str, Any]) -> AsyncIterator[Core]:
    workspace.write_config(extra)
    config = load_config(workspace.config_path)
    for directory in (config.logs_dir, config.job_output_dir, config.locks_dir):
        directory.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    store = SQLiteStore(config.database_path)
    journal = Journal(store, errors.append)
    pool = WorkerPool(
        config, size=config.workers, on_error=errors.append, after_commit=journal.after_commit
    )
    joblog = JobLog(config.logs_dir)
    attempts = Attempts(config, pool, joblog, config.node_name)
    engine = Engine(
        config=config,
        store=store,
        journal=journal,
        attempts=attempts,
        events=EventHub(),
        joblog=joblog,
        owner=config.node_name,
    )
    ran = Core(engine, store, errors)
    engine.attempt_listeners.append(lambda job, result: ran.ran.append((job, result, engine.busy)))
    await pool.start()
    engine.start()
    try:
        yield ran
    finally:
        await engine.drain(5.0)
        await pool.close()
        journal.close()
        if store.in_transaction:
            store.commit()
        store.close()


def run(
    workspace: Workspace, extra: dict[str, Any], test: Callable[[Core], Awaitable[None]]
) -> None:
    async def main() -> None:
        async with core(workspace, extra) as running:
            await test(running)

    asyncio.run(main())


def sleep(seconds: float, class_name: str = "Sleep") -> JobSpec:
    return JobSpec(class_name=class_name, method="handle", params=[seconds])


def test_busy_slots_never_exceed_the_workers_and_each_job_runs_once(workspace: Workspace) -> None:
    async def test(core: Core) -> None:
        stored = await core.submit(*[sleep(0.05) for _ in range(8)])
        await core.until(lambda: core.finished() == 8)
        assert len(core.ran) == 8
        assert sorted(job.id for job, _, _ in core.ran) == sorted(ids[0] for ids, _ in stored)
        assert max(busy for _, _, busy in core.ran) <= 2
        await core.until(lambda: core.engine.busy == 0)
        assert core.engine.finishes.count() == 8
        assert not core.errors

    run(workspace, {"daemon": {"workers": 2}}, test)


def test_idle_workers_claim_the_jobs_come_due_together_in_one_batch(
    workspace: Workspace,
) -> None:
    async def test(core: Core) -> None:
        batches: list[int] = []
        claim_batch = core.store.claim_batch

        def counted(owner: str, worker_pids: Sequence[int], *args: Any, **kwargs: Any) -> Any:
            batches.append(len(worker_pids))
            return claim_batch(owner, worker_pids, *args, **kwargs)

        core.store.claim_batch = counted  # type: ignore[method-assign]
        due = datetime.now(UTC) + timedelta(seconds=0.5)
        spec = JobSpec(class_name="Sleep", method="handle", params=[0.05], run_at=due)
        await core.submit(*[spec] * 3)
        await core.until(lambda: core.finished() == 3)
        assert batches[0] == 3  # the three idle workers' claims in one call
        assert len({result.worker_pid for _, result, _ in core.ran}) == 3
        assert not core.errors

    run(workspace, {"daemon": {"workers": 3}}, test)


def test_a_class_at_its_limit_waits_while_another_class_runs(workspace: Workspace) -> None:
    async def test(core: Core) -> None:
        await core.submit(*[sleep(0.1) for _ in range(3)], sleep(0.01, "Echo"))
        await core.until(lambda: core.finished() == 4)
        runs = sorted(
            (result.started_at, result.finished_at)
            for job, result, _ in core.ran
            if job.class_name == "Sleep"
        )
        for (_, ended), (started, _) in itertools.pairwise(runs):
            assert started >= ended, runs  # max_concurrency = 1: never two at once
        echo = next(result for job, result, _ in core.ran if job.class_name == "Echo")
        assert echo.finished_at < runs[-1][0]  # not held behind the limited class

    run(
        workspace,
        {"daemon": {"workers": 3}, "jobs": {"Sleep": {"max_concurrency": 1}}},
        test,
    )


def test_a_submit_with_a_worker_idle_is_stored_running(workspace: Workspace) -> None:
    async def test(core: Core) -> None:
        assert core.engine.busy == 0  # the pool has started its warm worker
        stored: list[Stored | BaseException] = []
        core.engine.submit([sleep(0.01)], stored.append)
        # Before the commit: the row is already the attempt's (no claim follows).
        job = core.store.get(1)
        assert job is not None and job.state is JobState.RUNNING
        assert core.engine.busy == 1
        await core.until(lambda: core.finished() == 1)
        assert stored == [[([1], False)]]

    run(workspace, {"daemon": {"workers": 1}}, test)


def test_an_equal_unique_job_is_the_answer_and_a_refusal_stores_nothing(
    workspace: Workspace,
) -> None:
    async def test(core: Core) -> None:
        first = await core.submit(sleep(0.3))
        again = await core.submit(sleep(0.3))
        assert again == [(first[0][0], True)]
        with pytest.raises(RefusedError):
            core.engine.submit([JobSpec(class_name="os", method="system", params=[])], print)
        assert sum(core.store.counts().values()) == 1
        assert "SECURITY" in workspace.error_log()

    run(workspace, {"jobs": {"Sleep": {"unique": True}}}, test)


def test_the_finish_window_forgets_what_is_older_than_a_minute() -> None:
    counter = FinishCounter()
    counter.add(1000.0)
    counter.add(1030.0)
    assert counter.count(now=1059.0) == 2
    assert counter.count(now=1061.0) == 1
    counter.add(1100.0)
    assert counter.count(now=1100.0) == 1


def test_an_end_that_finds_the_store_locked_is_recorded_once_it_is_free(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process holds the write lock past the store's wait (a node stopped while it
    wrote): the attempt's end is kept and recorded when the lock is free, once; the job is
    neither failed as an internal error nor left running."""
    monkeypatch.setattr(sqlite_store, "_BUSY_TIMEOUT_MS", 200)

    async def test(core: Core) -> None:
        ((ids, _),) = await core.submit(sleep(0.3))
        await core.until(lambda: core.store.get(ids[0]).state is JobState.RUNNING)  # type: ignore[union-attr]
        await core.engine.journal.committed()
        other = sqlite3.connect(core.store.path, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            # It ends while the lock is held, waits for the store in vain, and is kept.
            await core.until(lambda: "its end is recorded later" in workspace.error_log())
            job = core.store.get(ids[0])
            assert job is not None and job.state is JobState.RUNNING
        finally:
            other.execute("COMMIT")
            other.close()
        await core.until(lambda: core.finished() == 1)
        job = core.store.get(ids[0])
        assert job is not None and job.state is JobState.SUCCEEDED and job.attempts == 1
        assert not [e for e in core.errors if "internal error" in e]

    run(workspace, {"daemon": {"workers": 1}}, test)


def test_children_the_host_process_had_before_are_not_taken_for_orphans(
    workspace: Workspace,
) -> None:
    """The engine inside another program (here, the test run): its sweep of a killed
    worker's orphans leaves the program's own earlier children alone (pytest's
    multiprocessing helper was killed that way)."""
    own = subprocess.Popen(["sleep", "60"])
    try:

        async def test(core: Core) -> None:
            await core.submit(JobSpec(class_name="Crash", method="handle"))
            await core.until(lambda: core.finished() == 1)  # its worker died: a sweep ran

        run(workspace, {"daemon": {"workers": 1}}, test)
        assert own.poll() is None
    finally:
        own.kill()
        own.wait()
