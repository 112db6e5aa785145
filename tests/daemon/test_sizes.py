"""Sizes decided at the door: oversize params are refused, oversize results fail their
attempt, listings carry summaries, `show` and `wait` deliver whole records, and a stored
job whose params cannot reach a worker fails instead of looping."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from bgjobctl import run_background_job
from bgjobctl.library import close_clients
from bgjobd.attempts import MAX_GIVE_BACKS, AttemptResult, Attempts
from bgjobd.joblog import JobLog
from bgjobd.pool import WorkerPool
from bgjobd.store.base import FinishedAttempt, JobQuery, NewJob
from bgjobd.store.sqlite import SQLiteStore
from bgjobs.config import load_config
from bgjobs.errors import JobFailed, TooLarge
from bgjobs.model import ErrorInfo, JobInfo, JobSpec, JobState, Outcome, Priority
from bgjobs.protocol import MAX_FRAME_BYTES
from tests.support.waiting import wait_for
from tests.support.workspace import Workspace

SIZE_JOBS: dict[str, Any] = {
    "allowed_jobs": {"BigResult": ["handle"], "Flood": ["handle"]},
}


def _final(workspace: Workspace, job_id: int, timeout: float = 30.0) -> JobInfo:
    client = workspace.client()

    def final() -> JobInfo | None:
        job = client.get(job_id)
        return job if job.state.is_final else None

    found = wait_for(final, timeout=timeout, what=f"job {job_id} to end")
    assert found is not None
    return found


def test_params_over_the_limit_are_refused_and_nothing_is_stored(workspace: Workspace) -> None:
    workspace.write_config({"max_params_bytes": "64KiB"})
    workspace.start_daemon()
    big = "p" * 100_000
    submitted = workspace.bgjobctl("submit", "Echo", "handle", big)
    assert submitted.returncode == 2, submitted.stderr
    assert "max_params_bytes" in submitted.stderr and "64 KiB" in submitted.stderr
    # A chain's later link is measured too.
    chained = workspace.bgjobctl("submit", "Echo", "handle", "x", "--then", f"Echo:handle:{big}")
    assert chained.returncode == 2, chained.stderr
    with pytest.raises(TooLarge, match="max_params_bytes"):
        run_background_job("Echo", "handle", [big], config=str(workspace.config_path))
    close_clients()
    assert workspace.client().list_jobs().total == 0


def test_near_the_frame_cap_is_refused_by_the_library_and_the_daemon(
    workspace: Workspace,
) -> None:
    workspace.start_daemon()  # max_params_bytes: 1 MiB by default
    config = str(workspace.config_path)
    try:
        with pytest.raises(TooLarge, match="max_params_bytes"):
            run_background_job("Echo", "handle", ["n" * (MAX_FRAME_BYTES - 4096)], config=config)
        with pytest.raises(TooLarge, match="a request carries"):
            run_background_job("Echo", "handle", ["n" * MAX_FRAME_BYTES], config=config)
    finally:
        close_clients()
    assert workspace.client().list_jobs().total == 0


def test_run_job_refuses_oversize_params(workspace: Workspace) -> None:
    workspace.write_config({"max_params_bytes": "64KiB"})
    ran = workspace.run_job("Echo", "handle", "p" * 100_000)
    assert ran.returncode == 2, ran.stderr
    assert "max_params_bytes" in ran.stderr
    store = SQLiteStore(workspace.storage / "bgjobs.db")
    try:
        assert store.search(JobQuery())[1] == 0
    finally:
        store.close()


def test_a_large_record_is_listed_as_a_summary_and_shown_whole(workspace: Workspace) -> None:
    workspace.start_daemon()
    big = "b" * 900_000  # with the defaults: params and result each just under 1 MiB
    handle = run_background_job("Echo", "handle", [big], config=str(workspace.config_path))
    try:
        assert handle.wait(30) == [big]
    finally:
        close_clients()
    listing = workspace.bgjobctl("--json", "list")
    assert listing.returncode == 0, listing.stderr
    (listed,) = json.loads(listing.stdout)["jobs"]
    assert listed["truncated"] is True
    assert len(json.dumps(listed)) < 4096
    human = workspace.bgjobctl("list")
    assert human.returncode == 0 and "[cut]" in human.stdout
    shown = workspace.bgjobctl("--json", "show", str(handle.id))
    assert shown.returncode == 0, shown.stderr
    record = json.loads(shown.stdout)
    assert record["params"] == [big] and record["result"] == [big]
    assert record["truncated"] is False


def test_a_large_result_fails_the_attempt_as_result_too_large(workspace: Workspace) -> None:
    workspace.write_config(SIZE_JOBS)
    workspace.start_daemon()
    spec = JobSpec(class_name="BigResult", method="handle", params=[5_000_000])
    job_id = workspace.client().submit([spec]).ids[0]
    job = _final(workspace, job_id)
    assert job.state is JobState.FAILED
    assert job.error is not None and job.error.type == "ResultTooLarge", job.error
    assert "max_result_bytes" in job.error.message and "1 MiB" in job.error.message
    assert job.reason is None or "lock file" not in job.reason


def test_a_chain_carries_a_large_result_into_large_params(workspace: Workspace) -> None:
    workspace.write_config(
        {**SIZE_JOBS, "max_params_bytes": "1536KiB", "max_result_bytes": "2200KiB"}
    )
    workspace.start_daemon()
    client = workspace.client()
    own = "o" * 1_500_000
    handle = run_background_job(
        "BigResult",
        "handle",
        [2_000_000],
        then=[("Echo", "handle", [own])],
        config=str(workspace.config_path),
    )
    try:
        with pytest.raises(JobFailed) as failed:  # Echo returns both: over max_result_bytes
            handle.wait(60)
    finally:
        close_clients()
    last = failed.value.job
    assert last.error is not None and last.error.type == "ResultTooLarge"
    assert last.attempts == 1 and last.chain_position == 2
    link = client.get(last.id)
    assert link.params == ["r" * 2_000_000, own]


def test_a_stored_job_too_large_for_a_worker_fails_without_looping(workspace: Workspace) -> None:
    store = SQLiteStore(workspace.storage / "bgjobs.db")
    now = time.time()
    try:
        (job_id,) = store.add(
            [
                NewJob(
                    class_name="Echo",
                    method="handle",
                    params=["o" * (MAX_FRAME_BYTES - 100)],
                    priority=Priority.MEDIUM,
                    state=JobState.QUEUED,
                    run_at=now,
                    max_attempts=3,
                    timeout=30,
                    created_at=now,
                )
            ]
        )
        store.commit()
    finally:
        store.close()
    workspace.start_daemon()
    client = workspace.client()
    pids_before = sorted(worker.pid for worker in client.stats().workers)
    job = _final(workspace, job_id, timeout=10)
    assert job.state is JobState.FAILED
    assert job.error is not None and job.error.type == "ParamsTooLarge", job.error
    assert job.attempts == 1 and job.reason == "params too large: no retry"
    # No worker died for it: the daemon never handed the attempt over.
    assert sorted(worker.pid for worker in client.stats().workers) == pids_before
    assert "WorkerCrashed" not in workspace.error_log()
    # The record is too large for a frame, yet list and show work.
    assert workspace.bgjobctl("list").returncode == 0
    shown = workspace.bgjobctl("--json", "show", str(job_id))
    assert shown.returncode == 0, shown.stderr
    assert len(json.loads(shown.stdout)["params"][0]) == MAX_FRAME_BYTES - 100


def test_a_worker_dying_before_every_attempt_ends_as_a_crash(workspace: Workspace) -> None:
    """An attempt whose worker dies before taking it up is given back, uncounted, but only
    MAX_GIVE_BACKS - 1 times in a row: then it counts as a crash, so no job loops."""
    config = load_config(workspace.config_path)
    for directory in (config.logs_dir, config.job_output_dir, config.locks_dir):
        directory.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)
    job = JobInfo(
        id=7,
        class_name="Echo",
        method="handle",
        params=[],
        priority=Priority.MEDIUM,
        state=JobState.RUNNING,
        run_at=now,
        attempts=1,
        max_attempts=1,
        timeout=30,
        created_at=now,
    )

    async def scenario() -> list[AttemptResult]:
        pool = WorkerPool(config, size=1, on_error=lambda text: None)
        await pool.start()
        attempts = Attempts(config, pool, JobLog(config.logs_dir), "test")
        results = []
        try:
            for _ in range(MAX_GIVE_BACKS):
                async with attempts.worker() as worker:
                    os.kill(worker.pid, signal.SIGKILL)  # dies before it reads the attempt
                    results.append(await attempts.run(worker, job, 1))
        finally:
            await pool.close()
        return results

    results = asyncio.run(scenario())
    outcomes = [result.outcome for result in results]
    assert outcomes == [Outcome.INTERRUPTED] * (MAX_GIVE_BACKS - 1) + [Outcome.CRASHED]
    crash = results[-1].error
    assert crash is not None and crash.type == "WorkerCrashed"
    assert f"{MAX_GIVE_BACKS} times in a row" in crash.message


def test_a_record_with_a_long_history_is_shown_with_earlier_errors_cut(
    workspace: Workspace,
) -> None:
    """Every attempt's traceback whole would not fit in a reply: the latest attempts keep
    theirs, earlier ones keep their end."""
    attempts = 260  # with 72 KiB of error each: 18 MiB, over the 16 MiB a reply carries
    store = SQLiteStore(workspace.storage / "bgjobs.db")
    now = time.time()
    try:
        (job_id,) = store.add(
            [
                NewJob(
                    class_name="Echo",
                    method="handle",
                    params=["p" * 900_000],
                    priority=Priority.MEDIUM,
                    state=JobState.QUEUED,
                    run_at=now,
                    max_attempts=attempts,
                    timeout=30,
                    created_at=now,
                )
            ]
        )
        for number in range(1, attempts + 1):
            assert store.claim(job_id, "test", None, now) is not None
            error = ErrorInfo(type="E", message="m" * 8000, traceback=f"{number}:" + "t" * 65_536)
            state = JobState.QUEUED if number < attempts else JobState.FAILED
            store.finish_attempt(
                job_id, FinishedAttempt(number, Outcome.FAILED, now, 0.1, error), state
            )
        store.commit()
    finally:
        store.close()
    workspace.start_daemon()
    shown = workspace.bgjobctl("--json", "show", str(job_id))
    assert shown.returncode == 0, shown.stderr
    record = json.loads(shown.stdout)
    assert len(record["params"][0]) == 900_000
    history = record["history"]
    assert len(history) == attempts
    assert len(history[-1]["error"]["traceback"]) == len(f"{attempts}:") + 65_536
    assert len(history[0]["error"]["traceback"]) == 2048
    assert workspace.bgjobctl("list").returncode == 0
