"""The testing mode (`bgjobd.testing`, loaded by pytest through its entry point): jobs are
captured for assertions, or run eagerly in the test's process, with the configuration's
allow-list, retry rules and chains."""

from __future__ import annotations

from pathlib import Path

import pytest
import tomli_w

from bgjobctl import run_background_job, run_background_job_async
from bgjobd.testing import RecordedJobs
from bgjobs.errors import JobFailed, RefusedError
from tests.support.workspace import DEFAULT_SETTINGS, TEST_JOBS, merged


@pytest.fixture
def bgjobs_config(tmp_path: Path) -> str:
    (tmp_path / "testjobs").symlink_to(TEST_JOBS, target_is_directory=True)
    settings = merged(
        DEFAULT_SETTINGS,
        {
            "retry_attempts": 2,
            "retry_delay_seconds": 60,  # never waited for in the testing mode
            "exceptions": {"KeyError": {"action": "fail"}},
        },
    )
    path = tmp_path / "bgjobs.toml"
    path.write_bytes(tomli_w.dumps(settings).encode())
    return str(path)


def test_capture_records_without_running(bgjobs_capture: RecordedJobs) -> None:
    handle = run_background_job("Echo", "handle", [1, "two"], 30, priority="high")
    assert handle.id == 1
    [job] = bgjobs_capture.assert_enqueued("Echo", "handle", [1, "two"])
    assert job.state.value == "queued" and job.priority.value == "high"
    bgjobs_capture.assert_not_enqueued("Sleep")
    with pytest.raises(AssertionError, match="no job Echo::handle"):
        bgjobs_capture.assert_enqueued("Echo", "handle", ["other"])
    with pytest.raises(TimeoutError):
        handle.wait(1)
    [ended] = bgjobs_capture.run_all()
    assert ended.state.value == "succeeded"
    assert handle.wait(1) == [1, "two"]


def test_eager_runs_at_once_with_retries_rules_and_chains(bgjobs_eager: RecordedJobs) -> None:
    assert run_background_job("Echo", "handle", ["x"]).wait() == ["x"]
    # A chain: each link receives the previous result first.
    chain = run_background_job("Add", "handle", [2, 3], then=[("Add", "handle", [10])])
    assert chain.wait() == 15.0
    # Retries follow retry_attempts (three attempts in all), without waiting the delay.
    with pytest.raises(JobFailed) as failed:
        run_background_job("Fail", "handle", ["boom"]).wait()
    assert failed.value.job.attempts == 3 and failed.value.job.error is not None
    assert failed.value.job.error.type == "ValueError"
    # An exception rule stops retrying.
    with pytest.raises(JobFailed) as stopped:
        run_background_job("Raise", "handle", ["KeyError", "gone"]).wait()
    assert stopped.value.job.attempts == 1
    assert "rule KeyError" in (stopped.value.job.reason or "")
    # The allow-list refuses, as the daemon would.
    with pytest.raises(RefusedError):
        run_background_job("Echo", "_secret")
    with pytest.raises(RefusedError):
        run_background_job("NotListed", "handle")
    assert len(bgjobs_eager.jobs) == 5


async def _submit_async() -> object:
    handle = await run_background_job_async("AsyncEcho", "handle", ["from a loop"])
    return await handle.wait(1)


def test_eager_serves_the_asyncio_client(bgjobs_eager: RecordedJobs) -> None:
    import asyncio

    assert asyncio.run(_submit_async()) == "from a loop"
