"""Exactly one job per submit: a key sent twice (resent, raced, fallen back) is one job,
and an attempt that finished before a crash is recorded, not run again."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import msgspec
import pytest

from bgjobctl.library import JobClient, make_spec
from bgjobd import donefiles, locks
from bgjobd.store.base import NewJob
from bgjobd.store.sqlite import SQLiteStore
from bgjobd.worker.messages import AttemptDone
from bgjobs.config import load_config
from bgjobs.errors import BadParams
from bgjobs.model import JobInfo, JobState, Outcome, Priority
from tests.support.waiting import wait_for
from tests.support.workspace import Workspace

TOKEN_JOBS = {"allowed_jobs": {"Token": ["handle"]}}
OUTCOME_FILES = f"{donefiles.PREFIX}*{donefiles.SUFFIX}"


def tokens(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def jobs_with_key(workspace: Workspace, key: str) -> list[JobInfo]:
    store = SQLiteStore(workspace.storage / "bgjobs.db")
    try:
        found = store.find_by_key(key)
        return [job for job in map(store.get, found or []) if job is not None]
    finally:
        store.close()


def test_the_same_key_twice_is_one_job(workspace: Workspace) -> None:
    workspace.write_config(TOKEN_JOBS)
    workspace.start_daemon()
    client = workspace.client()
    out = workspace.root / "tokens"
    spec = make_spec("Token", "handle", [str(out), "once"], 0.3, key="order-17")
    first = client.submit([spec])
    again = client.submit([spec])
    assert again.ids == first.ids and first.existing == [False] and again.existing == [True]
    assert client.wait(first.ids[0], 10).result == "once"
    late = client.submit([spec])  # also once the job is over
    assert late.ids == first.ids and late.existing == [True]
    assert client.get(first.ids[0]).key == "order-17"
    assert client.stats().counts["succeeded"] == 1
    assert tokens(out) == ["once"]


def test_a_chain_resent_is_the_same_chain(workspace: Workspace) -> None:
    workspace.write_config(TOKEN_JOBS)
    workspace.start_daemon()
    client = workspace.client()
    spec = make_spec("Echo", "handle", [1], then=[("Echo", "handle")], key="chain")
    first, again = client.submit([spec]), client.submit([spec])
    assert (again.ids, again.last_ids) == (first.ids, first.last_ids)
    assert first.last_ids[0] != first.ids[0]
    assert client.wait(first.last_ids[0], 10).state is JobState.SUCCEEDED
    assert sum(client.stats().counts.values()) == 2


def test_bad_keys_are_refused_and_change_nothing(workspace: Workspace) -> None:
    workspace.start_daemon()
    client = workspace.client()
    spec = make_spec("Echo", "handle", [1])
    with pytest.raises(BadParams, match="idempotency key"):
        client.submit([msgspec.structs.replace(spec, key="x" * 201)])
    with pytest.raises(BadParams, match="idempotency key"):
        client.submit([msgspec.structs.replace(spec, key="")])
    assert sum(client.stats().counts.values()) == 0
    result = workspace.bgjobctl("submit", "Echo", "handle", "--key", "y" * 300)
    assert result.returncode == 2 and "key" in result.stderr


def test_processes_racing_with_one_key_make_one_job(workspace: Workspace) -> None:
    workspace.write_config(TOKEN_JOBS)
    workspace.start_daemon()
    out = workspace.root / "tokens"

    def submit(_: int) -> subprocess.CompletedProcess[str]:
        return workspace.bgjobctl(
            "--json", "submit", "Token", "handle", f"{out},raced", "--key", "the-key"
        )

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(submit, range(6)))
    assert [r.returncode for r in results] == [0] * 6, [r.stderr for r in results]
    answers = [json.loads(r.stdout) for r in results]
    assert len({answer["id"] for answer in answers}) == 1
    assert sorted(answer["existing"] for answer in answers) == [False] + [True] * 5
    client = workspace.client()
    wait_for(lambda: client.stats().counts["succeeded"] == 1, what="the job to run")
    assert sum(client.stats().counts.values()) == 1
    assert tokens(out) == ["raced"]


def run_fallback(workspace: Workspace, spec_json: str) -> subprocess.CompletedProcess[str]:
    """What the library spawns when the daemon does not answer."""
    return workspace.run(
        "-m", "bgjobd.oneshot", "--config", str(workspace.config_path), "--spec-json",
        spec_json, "Token", "handle",
    )  # fmt: skip


def test_a_fallback_runner_leaves_a_job_the_daemon_stored_alone(workspace: Workspace) -> None:
    """The daemon stored the submit but its reply was lost: the fallback runner sees the
    key and neither stores nor runs a second job."""
    workspace.write_config(TOKEN_JOBS)
    workspace.start_daemon()
    client = workspace.client()
    out = workspace.root / "tokens"
    spec = make_spec("Token", "handle", [str(out), "daemon"], key="lost-reply")
    job_id = client.submit([spec]).ids[0]
    ran = run_fallback(workspace, msgspec.json.encode(spec).decode())
    assert ran.returncode == 0, ran.stderr
    assert f"job {job_id} was submitted with the same idempotency key" in workspace.log()
    assert client.wait(job_id, 10).state is JobState.SUCCEEDED
    assert sum(client.stats().counts.values()) == 1
    assert tokens(out) == ["daemon"]


def test_a_submit_to_a_paused_daemon_runs_once(workspace: Workspace) -> None:
    """The client gives up on a daemon paused past its timeout and falls back; the
    daemon, resumed, reads the same submit and answers with the runner's job."""
    workspace.write_config(TOKEN_JOBS)
    daemon = workspace.start_daemon()
    out = workspace.root / "tokens"
    library = JobClient(config=str(workspace.config_path), timeout=1)
    try:
        library.client.ping()  # the connection is open: the submit goes out on it
        daemon.signal(signal.SIGSTOP)
        try:
            handle = library.submit(make_spec("Token", "handle", [str(out), "paused"]))
            assert handle.spooled is not None  # fell back to the spool
            handle.wait(60)
            assert tokens(out) == ["paused"]
        finally:
            daemon.signal(signal.SIGCONT)
        client = workspace.client()
        client.ping()  # answered after the daemon has read what waited on the old connection
        wait_for(lambda: client.stats().counts["running"] == 0, what="nothing running")
        assert sum(client.stats().counts.values()) == 1
        assert tokens(out) == ["paused"]
    finally:
        library.close()


def test_an_attempt_finished_before_a_crash_is_recorded_not_run_again(
    workspace: Workspace,
) -> None:
    """The worker finished the job and wrote its outcome down; the daemon died (SIGSTOP,
    then SIGKILL) before recording it. The next daemon records it as succeeded."""
    workspace.write_config({**TOKEN_JOBS, "retry_attempts": 2})
    daemon = workspace.start_daemon()
    client = workspace.client()
    out, gate = workspace.root / "tokens", workspace.root / "gate"
    spec = make_spec("Token", "handle", [str(out), "finished", 0, str(gate)])
    job_id = client.submit([spec]).ids[0]
    client.close()
    wait_for(workspace.lock_files, what="the attempt to start")
    daemon.signal(signal.SIGSTOP)
    gate.touch()
    outcome_files = workspace.storage / "jobs"
    wait_for(
        lambda: not workspace.lock_files() and list(outcome_files.glob(OUTCOME_FILES)),
        what="the worker to finish and write the outcome down",
    )
    daemon.kill()
    workspace.start_daemon()
    client = workspace.client()
    job = client.wait(job_id, 10)
    assert job.state is JobState.SUCCEEDED and job.result == "finished"
    assert [attempt.outcome for attempt in job.history] == [Outcome.SUCCEEDED]
    assert tokens(out) == ["finished"]
    wait_for(lambda: not list(outcome_files.glob(OUTCOME_FILES)), what="the outcome file to go")


def test_outcome_files_do_not_stay_behind(workspace: Workspace) -> None:
    workspace.write_config(TOKEN_JOBS)
    workspace.start_daemon()
    client = workspace.client()
    ids = client.submit([make_spec("Fail", "handle"), make_spec("Echo", "handle", [1])]).ids
    for job_id in ids:
        client.wait(job_id, 10)
    locks_dir = workspace.storage / "jobs"
    kept = set(locks_dir.glob(OUTCOME_FILES))
    assert len(kept) <= 2  # one per worker: records are appended, not a file per attempt
    ran = workspace.run_job("Echo", "handle", "x")
    assert ran.returncode == 0
    assert set(locks_dir.iterdir()) == kept  # run_job.py's worker left nothing behind


def test_the_key_travels_with_a_fallback(workspace: Workspace) -> None:
    """Without a daemon the library's job is stored by run_job.py with its key."""
    workspace.write_config(TOKEN_JOBS)
    out = workspace.root / "tokens"
    library = JobClient(config=str(workspace.config_path))
    try:
        spec = make_spec("Token", "handle", [str(out), "offline"], key="k-offline")
        library.submit(spec).wait(60)
        again = run_fallback(workspace, msgspec.json.encode(spec).decode())
        assert again.returncode == 0
    finally:
        library.close()
    assert [job.state for job in jobs_with_key(workspace, "k-offline")] == [JobState.SUCCEEDED]
    assert tokens(out) == ["offline"]


def crashed_state(workspace: Workspace, out: Path, state: JobState) -> int:
    """The store as a SIGKILL leaves it when a claim was not committed yet: the job is
    waiting there, although a worker ran it."""
    workspace.storage.mkdir(parents=True, exist_ok=True)
    (workspace.storage / "jobs").mkdir(exist_ok=True)
    store = SQLiteStore(workspace.storage / "bgjobs.db")
    now = time.time()
    job_id = store.add(
        [
            NewJob(
                class_name="Token",
                method="handle",
                params=[str(out), "ran"],
                priority=Priority.MEDIUM,
                state=state,
                run_at=now - 1,
                max_attempts=2,
                timeout=30,
                created_at=now - 1,
                owner=load_config(workspace.config_path).node_name,
            )
        ]
    )[0]
    store.commit()
    store.close()
    return job_id


def test_a_finished_run_whose_claim_was_lost_is_recorded_not_run_again(
    workspace: Workspace,
) -> None:
    workspace.write_config(TOKEN_JOBS)
    out = workspace.root / "tokens"
    job_id = crashed_state(workspace, out, JobState.QUEUED)
    lock = locks.lock_path(workspace.storage / "jobs", "Token", "handle", job_id)
    dead_worker = donefiles.Outcomes(999_999)
    dead_worker.keep(str(lock), AttemptDone(job_id=job_id, attempt=1, duration=0.01, result="ran"))
    dead_worker.close()
    workspace.start_daemon()
    job = workspace.client().wait(job_id, 10)
    assert job.state is JobState.SUCCEEDED and job.result == "ran"
    assert [(a.number, a.outcome) for a in job.history] == [(1, Outcome.SUCCEEDED)]
    assert not out.exists()  # recorded from its outcome file, not run again
    assert not list(lock.parent.glob(OUTCOME_FILES))  # a dead worker's file goes


def test_a_run_under_way_whose_claim_was_lost_leaves_a_record(workspace: Workspace) -> None:
    """Only its lock file is left: the attempt counts as interrupted and the job goes on
    per its retries, so both runs show in its history."""
    workspace.write_config({**TOKEN_JOBS, "retry_attempts": 1, "retry_delay_seconds": 0})
    out = workspace.root / "tokens"
    job_id = crashed_state(workspace, out, JobState.SCHEDULED)
    lock = locks.lock_path(workspace.storage / "jobs", "Token", "handle", job_id)
    info = locks.make_info(job_id, "Token", "handle", pid=999_999, attempt=1, owner="x")
    lock.write_bytes(msgspec.json.encode(info))
    workspace.start_daemon()
    job = workspace.client().wait(job_id, 10)
    assert job.state is JobState.SUCCEEDED
    assert [(a.number, a.outcome) for a in job.history] == [
        (1, Outcome.INTERRUPTED),
        (2, Outcome.SUCCEEDED),
    ]
    assert tokens(out) == ["ran"]
