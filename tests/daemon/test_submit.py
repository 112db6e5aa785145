"""submit: through bgjobctl and the library; acknowledged only once stored."""

from __future__ import annotations

import json

from bgjobs.errors import RefusedError
from bgjobs.model import JobSpec, JobState
from tests.support.workspace import Workspace


def test_submit_and_wait_through_bgjobctl(workspace: Workspace) -> None:
    workspace.start_daemon()
    done = workspace.bgjobctl("submit", "Echo", "handle", "a,b", "--wait")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == 'job 1 succeeded: ["a","b"]'
    typed = workspace.bgjobctl(
        "--json", "submit", "Echo", "handle", "--json-params", '[1, {"k": true}]', "--wait"
    )
    assert json.loads(typed.stdout)["result"] == [1, {"k": True}]


def test_failed_job_with_wait_exits_1(workspace: Workspace) -> None:
    workspace.start_daemon()
    done = workspace.bgjobctl("submit", "Fail", "handle", "nope", "--wait")
    assert done.returncode == 1
    assert "ValueError: nope" in done.stdout


def test_submit_without_wait_returns_the_id(workspace: Workspace) -> None:
    workspace.start_daemon()
    done = workspace.bgjobctl("--json", "submit", "Echo", "handle", "x")
    assert json.loads(done.stdout) == {"id": 1, "last_id": 1, "existing": False}


def test_batch_submit_is_all_or_nothing(workspace: Workspace) -> None:
    workspace.start_daemon()
    client = workspace.client()
    try:
        client.submit(
            [
                JobSpec(class_name="Echo", method="handle"),
                JobSpec(class_name="Nope", method="handle"),
            ]
        )
    except RefusedError:
        pass
    else:
        raise AssertionError("a refused job must refuse the batch")
    assert client.list_jobs().total == 0
    submitted = client.submit(
        [JobSpec(class_name="Echo", method="handle", params=[i]) for i in range(3)]
    )
    assert submitted.ids == [1, 2, 3]
    for job_id in submitted.ids:
        assert client.wait(job_id, 10).state is JobState.SUCCEEDED


def test_usage_errors(workspace: Workspace) -> None:
    workspace.start_daemon()
    for args in (
        ("submit", "Echo"),
        ("submit", "Echo", "handle", "--delay", "soon"),
        ("submit", "Echo", "handle", "--priority", "urgent"),
        ("submit", "Echo", "handle", "--at", "tomorrow"),
        ("submit", "Echo", "handle", "--json-params", "[1"),
        ("submit", "Echo", "handle", "x", "--json-params", "[1]"),
    ):
        done = workspace.bgjobctl(*args)
        assert done.returncode == 2, (args, done.stderr)
    assert workspace.client().list_jobs().total == 0


def test_unreachable_daemon_exits_4(workspace: Workspace) -> None:
    done = workspace.bgjobctl("submit", "Echo", "handle")
    assert done.returncode == 4
    assert "no daemon answers" in done.stderr
