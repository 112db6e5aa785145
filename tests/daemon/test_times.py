"""Times in range against a real daemon: a job's bad `Retry(delay=)` is a failed attempt
that stalls nothing; bad delays and due times are refused at the door, storing nothing;
a configuration with `inf` or `nan` does not start."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest

from bgjobctl.library import run_background_job
from bgjobs.errors import BadParams, UsageError
from bgjobs.model import JobSpec, JobState
from tests.support.workspace import Workspace

RETRY_IN = {"allowed_jobs": {"RetryIn": ["handle"]}, "jobs": {"RetryIn": {"retry_attempts": 1}}}


def test_bad_retry_delays_fail_the_attempt_and_stall_nothing(workspace: Workspace) -> None:
    workspace.write_config(RETRY_IN)
    workspace.start_daemon()
    client = workspace.client()
    bad = ["nan", "inf", "1e308", "-1"]
    ids = client.submit(
        [JobSpec(class_name="RetryIn", method="handle", params=[delay]) for delay in bad]
    ).ids
    # Scheduled after the bad retries were decided: a NaN due time used to freeze the timer.
    for job_id in ids:
        job = client.wait(job_id, 20)
        assert job.state is JobState.FAILED, job
        assert job.attempts == 2, "the usual retry settings decide (1 retry)"
        for attempt in job.history:
            assert attempt.error is not None and attempt.error.type == "InvalidRetryDelay"
            assert "10 years" in attempt.error.message
    later = client.submit([JobSpec(class_name="Echo", method="handle", params=[1], delay=0.5)])
    assert client.wait(later.ids[0], 20).state is JobState.SUCCEEDED
    errors = workspace.error_log()
    assert "InvalidRetryDelay: Retry(delay=...): the delay must be from 0" in errors
    assert "internal error" not in errors.lower()


def test_a_good_retry_delay_is_still_honoured(workspace: Workspace) -> None:
    workspace.write_config(RETRY_IN)
    workspace.start_daemon()
    client = workspace.client()
    job_id = client.submit([JobSpec(class_name="RetryIn", method="handle", params=["0.2"])]).ids[0]
    job = client.wait(job_id, 20)
    assert job.state is JobState.FAILED and job.attempts == 2
    assert [a.error.type for a in job.history if a.error] == ["Retry", "Retry"]
    assert "the job raised Retry: retrying in 0.2s" in workspace.error_log()


BAD_SPECS = [
    JobSpec(class_name="Echo", method="handle", delay=math.nan),
    JobSpec(class_name="Echo", method="handle", delay=math.inf),
    JobSpec(class_name="Echo", method="handle", delay=1e308),
    JobSpec(class_name="Echo", method="handle", delay=-1.0),
    JobSpec(class_name="Echo", method="handle", run_at=datetime(1, 1, 1, tzinfo=UTC)),
    JobSpec(class_name="Echo", method="handle", run_at=datetime(1969, 7, 20, tzinfo=UTC)),
]


def test_bad_times_are_refused_at_every_door(workspace: Workspace) -> None:
    workspace.start_daemon()
    client = workspace.client()
    for spec in BAD_SPECS:  # a crafted Submit: the library would not send these
        with pytest.raises(BadParams, match=r"delay must be from 0|run_at must lie between"):
            client.submit([spec])
    for text in ["nan", "inf", "-1", "1e308", "-inf"]:
        done = workspace.bgjobctl("submit", "Echo", "handle", f"--delay={text}")
        assert done.returncode == 2, (text, done.stdout, done.stderr)
        assert "delay" in done.stderr and "Traceback" not in done.stderr
    for at in ["0001-01-01T00:00:00+00:00", "1969-12-31T00:00:00+00:00", "0001-01-01"]:
        done = workspace.bgjobctl("submit", "Echo", "handle", "--at", at)
        assert done.returncode == 2, (at, done.stdout, done.stderr)
        assert "Traceback" not in done.stderr
    for delay in [math.nan, math.inf, 1e308, -1.0]:
        with pytest.raises(UsageError, match="delay must be from 0"):
            run_background_job("Echo", "handle", delay=delay, fallback="error")
    with pytest.raises(UsageError, match="at must lie between"):
        run_background_job("Echo", "handle", at=datetime(1, 1, 1, tzinfo=UTC), fallback="error")
    assert client.list_jobs().total == 0, "nothing was stored"


@pytest.mark.parametrize("value", ["inf", "nan", "1e+308"])
def test_a_config_with_absurd_seconds_does_not_start(workspace: Workspace, value: str) -> None:
    workspace.write_config({"retry_delay_seconds": float(value)})  # written as `inf`, `nan`
    assert f"retry_delay_seconds = {float(value)}" in workspace.config_path.read_text()
    daemon = workspace.start_daemon(ready=False)
    assert daemon.process.wait(20) != 0
    assert "retry_delay_seconds" in daemon.stderr
