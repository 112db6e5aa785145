"""retry: a failed or cancelled job runs again with fresh attempts."""

from __future__ import annotations

from bgjobs.model import JobSpec, JobState
from tests.support.workspace import Workspace


def test_retry_a_failed_job(workspace: Workspace) -> None:
    workspace.start_daemon()
    client = workspace.client()
    counter = workspace.root / "count"
    job_id = client.submit(
        [JobSpec(class_name="Flaky", method="handle", params=[str(counter), 1])]
    ).ids[0]
    assert client.wait(job_id, 10).state is JobState.FAILED
    done = workspace.bgjobctl("retry", str(job_id))
    assert done.returncode == 0, done.stderr
    job = client.wait(job_id, 10)
    assert job.state is JobState.SUCCEEDED and job.attempts == 1 and job.result == 2
    assert [a.outcome.value for a in job.history if a.outcome] == ["failed", "succeeded"]


def test_retry_all_failed_and_errors(workspace: Workspace) -> None:
    workspace.start_daemon()
    client = workspace.client()
    ids = client.submit([JobSpec(class_name="Fail", method="handle") for _ in range(2)]).ids
    for job_id in ids:
        client.wait(job_id, 10)
    assert client.retry_failed() == ids
    ok = client.submit([JobSpec(class_name="Echo", method="handle")]).ids[0]
    client.wait(ok, 10)
    refused = workspace.bgjobctl("retry", str(ok))
    assert refused.returncode == 1 and "only failed or cancelled" in refused.stderr
    assert workspace.bgjobctl("retry").returncode == 2
