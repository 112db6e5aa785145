"""Batches: a group of jobs and a callback that runs once, with their results, when every
one of them has ended; also across a daemon killed mid-batch."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pytest

from bgjobctl.client import Client
from bgjobctl.library import close_clients, run_batch
from bgjobd.drain import IDLE_ENV
from bgjobs.errors import DaemonUnreachable, InvalidState
from bgjobs.model import ChainLink, JobInfo, JobSpec, JobState
from tests.support import procs
from tests.support.waiting import wait_for
from tests.support.workspace import Workspace

ALLOWED = {"allowed_jobs": {"Square": ["handle"], "BatchCallback": ["handle"]}}
SQUARES = [n * n for n in range(100)]


def calls(token: Path) -> list[list[Any]]:
    """The results each call of the callback was given, one per call."""
    if not token.exists():
        return []
    return [json.loads(line) for line in token.read_text().splitlines()]


def members(client: Client, batch_id: int) -> list[JobInfo]:
    return client.get_with_chain(batch_id).batch


def batch_spec(token: Path, jobs: list[ChainLink], *, on_failure: bool = False) -> JobSpec:
    return JobSpec(
        class_name="BatchCallback",
        method="handle",
        params=[str(token)],
        batch=jobs,
        run_callback_on_failure=on_failure,
    )


def test_a_batch_of_100_runs_its_callback_once_with_their_results(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    workspace.write_config({**ALLOWED, "daemon": {"workers": 4}})
    workspace.start_daemon()
    monkeypatch.setenv("BGJOBS_CONFIG", str(workspace.config_path))
    token = workspace.root / "token"
    try:
        handle = run_batch(
            [("Square", "handle", [n]) for n in range(100)],
            ("BatchCallback", "handle", [str(token)]),
        )
        assert handle.wait(60) == sum(SQUARES)
        assert handle.id is not None
        batch_id = handle.id
    finally:
        close_clients()
    assert calls(token) == [SQUARES]
    client = workspace.client()
    callback = client.get(batch_id)
    assert callback.is_batch_callback and callback.attempts == 1
    assert callback.params == [SQUARES, str(token)]
    found = members(client, batch_id)
    assert [job.state for job in found] == [JobState.SUCCEEDED] * 100
    assert [job.params for job in found] == [[n] for n in range(100)]
    assert all(job.batch_id == batch_id for job in found)


def test_a_daemon_killed_mid_batch_still_runs_the_callback_once(workspace: Workspace) -> None:
    """Half the members done, two running (waiting for a gate), the rest queued: SIGKILL,
    open the gate, restart: the interrupted ones run again, and the callback runs once
    with all 100 results."""
    workspace.write_config({**ALLOWED, "retry_attempts": 3, "retry_delay_seconds": 0})
    daemon = workspace.start_daemon()
    client = workspace.client()
    token = workspace.root / "token"
    gate = workspace.root / "gate"
    jobs = [ChainLink("Square", "handle", [n] if n < 50 else [n, str(gate)]) for n in range(100)]
    batch_id = client.submit([batch_spec(token, jobs)]).ids[0]

    def halfway() -> bool:
        states = [job.state for job in members(client, batch_id)]
        return states.count(JobState.SUCCEEDED) == 50 and states.count(JobState.RUNNING) == 2

    wait_for(halfway, timeout=60, what="50 members done and 2 running")
    client.close()
    daemon.kill()
    assert calls(token) == []
    gate.touch()
    workspace.start_daemon()
    client = workspace.client()
    assert client.wait(batch_id, 60).result == sum(SQUARES)
    assert calls(token) == [SQUARES]
    found = members(client, batch_id)
    assert [job.state for job in found] == [JobState.SUCCEEDED] * 100
    assert sum(job.attempts > 1 for job in found) == 2  # the two interrupted ones ran again


def test_a_failed_member_cancels_the_callback_and_a_retry_brings_it_back(
    workspace: Workspace,
) -> None:
    workspace.write_config(ALLOWED)
    workspace.start_daemon()
    client = workspace.client()
    token = workspace.root / "token"
    counter = workspace.root / "flaky"
    jobs = [ChainLink("Square", "handle", [2]), ChainLink("Flaky", "handle", [str(counter), 1])]
    batch_id = client.submit([batch_spec(token, jobs)]).ids[0]
    callback = client.wait(batch_id, 30)
    assert callback.state is JobState.CANCELLED and callback.attempts == 0
    assert callback.reason is not None and "Flaky::handle" in callback.reason
    assert "ended failed" in callback.reason
    assert calls(token) == []
    flaky = members(client, batch_id)[1]
    assert flaky.state is JobState.FAILED
    with pytest.raises(InvalidState, match=f"retry that job|job {flaky.id}"):
        client.retry(batch_id)  # the callback itself never got the results
    client.retry(flaky.id)  # it succeeds on its second call: the batch is whole again
    assert client.wait(batch_id, 30).result == 4 + 2
    assert calls(token) == [[4, 2]]


def test_run_callback_on_failure_passes_none_for_the_failed(workspace: Workspace) -> None:
    workspace.write_config(ALLOWED)
    workspace.start_daemon()
    client = workspace.client()
    token = workspace.root / "token"
    jobs = [
        ChainLink("Square", "handle", [1]),
        ChainLink("Fail", "handle"),
        ChainLink("Square", "handle", [3]),
    ]
    batch_id = client.submit([batch_spec(token, jobs, on_failure=True)]).ids[0]
    assert client.wait(batch_id, 30).result == 10
    assert calls(token) == [[1, None, 9]]


def test_cancelling_the_callback_cancels_the_members_not_started(workspace: Workspace) -> None:
    workspace.write_config({**ALLOWED, "daemon": {"workers": 1}})
    workspace.start_daemon()
    client = workspace.client()
    token = workspace.root / "token"
    gate = workspace.root / "gate"
    jobs = [ChainLink("Square", "handle", [n, str(gate)]) for n in range(5)]
    batch_id = client.submit([batch_spec(token, jobs, on_failure=True)]).ids[0]
    wait_for(
        lambda: members(client, batch_id)[0].state is JobState.RUNNING,
        what="the first member to start",
    )
    assert client.cancel(batch_id).state is JobState.CANCELLED
    states = [job.state for job in members(client, batch_id)]
    assert states == [JobState.RUNNING] + [JobState.CANCELLED] * 4
    gate.touch()
    assert client.wait(members(client, batch_id)[0].id, 30).state is JobState.SUCCEEDED
    assert client.get(batch_id).state is JobState.CANCELLED
    with pytest.raises(InvalidState, match="never got the results"):
        client.retry(batch_id)
    assert calls(token) == []


def test_a_batch_is_refused_whole_for_one_job_not_allowed(workspace: Workspace) -> None:
    workspace.write_config(ALLOWED)
    workspace.start_daemon()
    token = workspace.root / "token"
    jobs = [ChainLink("Square", "handle", [1]), ChainLink("Nope", "handle")]
    result = workspace.bgjobctl("list", "--json")
    assert result.returncode == 0
    client = workspace.client()
    with pytest.raises(Exception, match="Nope"):
        client.submit([batch_spec(token, jobs)])
    assert client.list_jobs().total == 0


def test_submit_batch_and_show_on_the_command_line(workspace: Workspace) -> None:
    workspace.write_config(ALLOWED)
    workspace.start_daemon()
    token = workspace.root / "token"
    submitted = workspace.bgjobctl(
        "submit-batch",
        f"BatchCallback:handle:{token}",
        "--job",
        "Square:handle:2",
        "--jobs-json",
        '[["Square", "handle", [3]], ["Fail", "handle"]]',
        "--run-callback-on-failure",
        "--wait",
        "--timeout",
        "30",
    )
    assert submitted.returncode == 0, submitted.stderr
    assert (
        submitted.stdout.startswith("batch ") and "its callback succeeded: 13" in submitted.stdout
    )
    assert calls(token) == [[4, 9, None]]
    batch_id = submitted.stdout.split()[1]

    shown = workspace.bgjobctl("show", batch_id)
    assert shown.returncode == 0, shown.stderr
    assert f"batch {batch_id}: this job is its callback, run once every job ended" in shown.stdout
    assert f"batch {batch_id}: 3 jobs: 2 succeeded, 1 failed" in shown.stdout
    rows = [line.split() for line in shown.stdout.splitlines()]
    assert ["1", str(int(batch_id) + 1), "succeeded", "Square::handle", '["2"]', "4"] in rows
    assert ["3", str(int(batch_id) + 3), "failed", "Fail::handle", "[]"] in rows

    member = workspace.bgjobctl("show", "--json", str(int(batch_id) + 2))
    assert member.returncode == 0, member.stderr
    record = json.loads(member.stdout)
    assert record["batch_id"] == int(batch_id)
    assert [job["id"] for job in record["batch"]] == [int(batch_id) + n for n in (1, 2, 3)]


def test_submit_batch_refuses_bad_input(workspace: Workspace) -> None:
    workspace.write_config(ALLOWED)
    workspace.start_daemon()
    for args, message in (
        (["BatchCallback:handle"], "a batch needs jobs"),
        (["BatchCallback:handle", "--jobs-json", "{}"], "expected an array"),
        (["BatchCallback:handle", "--jobs-json", "[["], "not valid JSON"),
        (["BatchCallback", "--job", "Square:handle"], "expected CLASS:METHOD"),
    ):
        result = workspace.bgjobctl("submit-batch", *args)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert message in result.stderr, (args, result.stderr)
    too_many = json.dumps([["Square", "handle", [1]]] * 1001)
    result = workspace.bgjobctl("submit-batch", "BatchCallback:handle", "--jobs-json", too_many)
    assert result.returncode == 2 and "1 to 1000 jobs" in result.stderr
    assert workspace.client().list_jobs().total == 0


def test_results_too_large_for_one_message_fail_the_callback(workspace: Workspace) -> None:
    """Five results of 1 MB are more than one message to a worker carries (4 MiB): the
    callback fails with ParamsTooLarge, without running, and its record keeps them."""
    workspace.write_config({"allowed_jobs": {"BigResult": ["handle"], "BatchCallback": ["handle"]}})
    workspace.start_daemon()
    client = workspace.client()
    token = workspace.root / "token"
    jobs = [ChainLink("BigResult", "handle", [1_000_000]) for _ in range(5)]
    callback = client.wait(client.submit([batch_spec(token, jobs)]).ids[0], 60)
    assert callback.state is JobState.FAILED
    assert callback.error is not None and callback.error.type == "ParamsTooLarge"
    assert [len(result) for result in callback.params[0]] == [1_000_000] * 5
    assert calls(token) == []


def test_a_batch_resent_with_its_key_is_the_same_batch(workspace: Workspace) -> None:
    workspace.write_config(ALLOWED)
    workspace.start_daemon()
    client = workspace.client()
    token = workspace.root / "token"
    jobs = [ChainLink("Square", "handle", [n]) for n in range(3)]
    spec = JobSpec(
        class_name="BatchCallback",
        method="handle",
        params=[str(token)],
        batch=jobs,
        key="one-batch",
    )
    first = client.submit([spec])
    again = client.submit([spec])
    assert first.last_ids == first.ids  # the callback: the job whose result is the batch's
    assert again.ids == first.ids and again.last_ids == first.ids
    assert again.existing == [True]
    assert client.wait(first.ids[0], 30).result == 5
    assert client.list_jobs().total == 4
    assert calls(token) == [[0, 1, 4]]


def test_the_asyncio_twin_runs_a_batch(workspace: Workspace) -> None:
    workspace.write_config(ALLOWED)
    workspace.start_daemon()
    token = workspace.root / "token"
    code = f"""
import asyncio
from bgjobctl import run_batch_async
from bgjobctl.aclient import close_clients

async def main():
    handle = await run_batch_async(
        [("Square", "handle", [n]) for n in range(10)],
        ("BatchCallback", "handle", [{str(token)!r}]),
    )
    print(handle.id, await handle.wait(30))
    await close_clients()

asyncio.run(main())
"""
    done = workspace.run("-c", code)
    assert done.returncode == 0, done.stderr
    batch_id, result = done.stdout.split()
    assert int(result) == sum(n * n for n in range(10))
    assert calls(token) == [[n * n for n in range(10)]]
    assert workspace.client().get(int(batch_id)).is_batch_callback


def test_cancelling_the_last_waiting_job_releases_the_callback(workspace: Workspace) -> None:
    """Jobs cancelled before they ran count as failed: cancelling the last one ends the
    batch, so the callback runs (asked to on failure) with None for each."""
    workspace.write_config(ALLOWED)
    workspace.start_daemon()
    client = workspace.client()
    token = workspace.root / "token"
    jobs = [ChainLink("Square", "handle", [n]) for n in range(3)]
    spec = msgspec.structs.replace(batch_spec(token, jobs, on_failure=True), delay=300)
    batch_id = client.submit([spec]).ids[0]
    for member in members(client, batch_id):
        assert member.state is JobState.SCHEDULED
        client.cancel(member.id)
    assert client.wait(batch_id, 30).result == 0
    assert calls(token) == [[None, None, None]]


def test_with_no_daemon_a_batch_is_spooled_whole_and_run_once(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The library's fallback: the batch goes to the spool as one submit, the host's
    drainer runs its jobs, then the callback once."""
    workspace.write_config(ALLOWED)
    monkeypatch.setenv("BGJOBS_CONFIG", str(workspace.config_path))
    monkeypatch.setenv(procs.MARKER_ENV, workspace.marker)
    monkeypatch.setenv(IDLE_ENV, "0.5")
    token = workspace.root / "token"
    try:
        handle = run_batch(
            [("Square", "handle", [n]) for n in range(5)],
            ("BatchCallback", "handle", [str(token)]),
        )
        assert handle.wait(30) == 0 + 1 + 4 + 9 + 16
        assert handle.id is not None and handle.job().is_batch_callback
        with pytest.raises(DaemonUnreachable):
            run_batch([("Square", "handle", [1])], ("BatchCallback", "handle"), fallback="error")
    finally:
        close_clients()
    assert calls(token) == [[0, 1, 4, 9, 16]]
    wait_for(
        lambda: (
            not any(
                "bgjobd.drain" in procs.describe(pid)
                for pid in procs.marked_processes(workspace.marker)
            )
        ),
        what="the drainer to exit once idle",
    )
