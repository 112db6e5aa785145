"""Chained jobs: each link gets the previous result first; a failure cancels the rest."""

from __future__ import annotations

import json

from bgjobctl.library import close_clients, run_background_job
from bgjobs.model import ChainLink, JobSpec, JobState
from tests.support.procs import is_gone
from tests.support.waiting import wait_for
from tests.support.workspace import Workspace


def test_three_links_pass_results_along(workspace: Workspace) -> None:
    workspace.start_daemon()
    client = workspace.client()
    submitted = client.submit(
        [
            JobSpec(
                class_name="Add",
                method="handle",
                params=[1, 2],
                then=[ChainLink("Add", "handle", [10]), ChainLink("Add", "handle", [100])],
            )
        ]
    )
    first, last = submitted.ids[0], submitted.last_ids[0]
    assert client.wait(last, 20).result == 113.0
    chain = client.get_with_chain(first).chain
    assert [link.state for link in chain] == [JobState.SUCCEEDED] * 3
    assert [link.params for link in chain] == [[1, 2], [3.0, 10], [13.0, 100]]
    assert [link.chain_position for link in chain] == [1, 2, 3]
    assert all(link.chain_id == first for link in chain)


def test_a_failing_middle_link_cancels_the_last(workspace: Workspace) -> None:
    workspace.start_daemon()
    client = workspace.client()
    submitted = client.submit(
        [
            JobSpec(
                class_name="Echo",
                method="handle",
                params=["x"],
                then=[ChainLink("Fail", "handle"), ChainLink("Echo", "handle")],
            )
        ]
    )
    last = client.wait(submitted.last_ids[0], 20)
    assert last.state is JobState.CANCELLED
    assert (
        last.reason is not None and "chain link 2" in last.reason and "Fail::handle" in last.reason
    )
    chain = client.get_with_chain(submitted.ids[0]).chain
    assert [link.state for link in chain] == [
        JobState.SUCCEEDED,
        JobState.FAILED,
        JobState.CANCELLED,
    ]
    assert last.attempts == 0


def test_retrying_the_failed_link_resumes_the_chain(workspace: Workspace) -> None:
    workspace.start_daemon()
    client = workspace.client()
    counter = workspace.root / "count"
    submitted = client.submit(
        [
            JobSpec(
                class_name="Flaky",
                method="handle",
                params=[str(counter), 1],
                then=[ChainLink("Add", "handle", [1])],
            )
        ]
    )
    assert client.wait(submitted.last_ids[0], 20).state is JobState.CANCELLED
    client.retry(submitted.ids[0])
    assert client.wait(submitted.last_ids[0], 20).result == 3.0


def test_cancelling_a_link_cancels_the_rest(workspace: Workspace) -> None:
    workspace.start_daemon()
    client = workspace.client()
    marker = workspace.root / "started"
    submitted = client.submit(
        [
            JobSpec(
                class_name="Sleep",
                method="handle",
                params=[30, str(marker)],
                then=[ChainLink("Echo", "handle")],
            )
        ]
    )
    wait_for(marker.exists)
    client.cancel(submitted.ids[0])
    last = client.wait(submitted.last_ids[0], 10)
    assert last.state is JobState.CANCELLED and "ended cancelled" in (last.reason or "")


def test_a_chain_survives_sigkill_and_restart(workspace: Workspace) -> None:
    daemon = workspace.start_daemon()
    client = workspace.client()
    submitted = client.submit(
        [
            JobSpec(
                class_name="Add",
                method="handle",
                params=[1, 2],
                then=[ChainLink("Add", "handle", [3]), ChainLink("Add", "handle", [4])],
                delay=0.5,
            )
        ]
    )
    client.close()
    daemon.kill()  # before the first link was even due: the whole chain is in the store
    workspace.start_daemon()
    client = workspace.client()
    assert client.wait(submitted.last_ids[0], 20).result == 10.0


def test_a_chain_resumes_mid_way_after_sigkill(workspace: Workspace) -> None:
    workspace.write_config({"retry_attempts": 1, "retry_delay_seconds": 0})
    daemon = workspace.start_daemon()
    client = workspace.client()
    marker = workspace.root / "second-started"
    submitted = client.submit(
        [
            JobSpec(
                class_name="Add",
                method="handle",
                params=[1, 1],
                then=[
                    ChainLink("Sleep", "handle", [str(marker)]),
                    ChainLink("Add", "handle", [40]),
                ],
            )
        ]
    )
    # Link 2 is Sleep(previous=2.0 seconds, marker): kill the daemon while it runs.
    wait_for(marker.exists, what="link 2 to start")
    worker = int(wait_for(marker.read_text))
    client.close()
    daemon.kill()
    wait_for(lambda: is_gone(worker))
    workspace.start_daemon()
    client = workspace.client()
    last = client.wait(submitted.last_ids[0], 30)
    assert last.state is JobState.SUCCEEDED and last.result == 42.0
    second = client.get(submitted.ids[0] + 1)
    assert [a.outcome.value for a in second.history if a.outcome] == ["interrupted", "succeeded"]


def test_chain_through_bgjobctl_and_show(workspace: Workspace) -> None:
    workspace.start_daemon()
    done = workspace.bgjobctl(
        "--json",
        "submit",
        "Add",
        "handle",
        "--json-params",
        "[2, 3]",
        "--then",
        "Add:handle:4",
        "--then",
        "Echo:handle:x,y",
        "--wait",
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["result"] == [9.0, "x", "y"]
    shown = workspace.bgjobctl("show", "2")
    assert "chain" in shown.stdout and "link 2 of 3" in shown.stdout
    listing = json.loads(workspace.bgjobctl("--json", "list").stdout)
    assert [job["chain_position"] for job in listing["jobs"]] == [3, 2, 1]


def test_chain_through_the_library(workspace: Workspace, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    workspace.start_daemon()
    monkeypatch.setenv("BGJOBS_CONFIG", str(workspace.config_path))
    try:
        handle = run_background_job(
            "Add", "handle", [1, 1], then=[("Add", "handle"), ("Add", "handle", [10])]
        )
        assert handle.wait(20) == 13.0
        assert handle.id != handle.last_id
    finally:
        close_clients()


def test_chain_in_run_job(workspace: Workspace) -> None:
    done = workspace.run_job(
        "Add", "handle", "1,2", "--then", "Add:handle:3", "--then", "Echo:handle:z"
    )
    assert done.returncode == 0, done.stderr
    job = workspace.client_store_job(3)
    assert job.result == [6.0, "z"]
    failing = workspace.run_job("Fail", "handle", "--then", "Echo:handle")
    assert failing.returncode == 1
    assert workspace.client_store_job(5).state is JobState.CANCELLED


def test_refused_links_refuse_the_whole_chain(workspace: Workspace) -> None:
    workspace.start_daemon()
    done = workspace.bgjobctl("submit", "Echo", "handle", "--then", "Evil:handle")
    assert done.returncode == 3
    assert workspace.client().list_jobs().total == 0
    assert workspace.run_job("Echo", "handle", "--then", "Evil:handle").returncode == 3
