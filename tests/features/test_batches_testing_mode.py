"""Batches in the testing mode: captured whole, or run eagerly with the callback once."""

from __future__ import annotations

from pathlib import Path

import pytest
import tomli_w

from bgjobctl.library import LinkSpec, run_batch
from bgjobd.testing import RecordedJobs
from bgjobs.errors import JobCancelled
from bgjobs.model import JobState
from tests.support.workspace import DEFAULT_SETTINGS, TEST_JOBS, merged


@pytest.fixture
def bgjobs_config(tmp_path: Path) -> str:
    (tmp_path / "testjobs").symlink_to(TEST_JOBS, target_is_directory=True)
    allowed = {"allowed_jobs": {"Square": ["handle"], "BatchCallback": ["handle"]}}
    path = tmp_path / "bgjobs.toml"
    path.write_bytes(tomli_w.dumps(merged(DEFAULT_SETTINGS, allowed)).encode())
    return str(path)


def test_eager_runs_the_jobs_then_the_callback_once(
    bgjobs_eager: RecordedJobs, tmp_path: Path
) -> None:
    token = tmp_path / "token"
    handle = run_batch(
        [("Square", "handle", [n]) for n in range(5)], ("BatchCallback", "handle", [str(token)])
    )
    assert handle.wait() == 0 + 1 + 4 + 9 + 16
    assert token.read_text().splitlines() == ["[0, 1, 4, 9, 16]"]
    callback = bgjobs_eager.get(handle.id or 0)
    assert callback.is_batch_callback and callback.state is JobState.SUCCEEDED


def test_a_failure_cancels_the_callback_unless_asked(
    bgjobs_eager: RecordedJobs, tmp_path: Path
) -> None:
    token = tmp_path / "token"
    jobs: list[LinkSpec] = [("Square", "handle", [2]), ("Fail", "handle")]
    skipped = run_batch(jobs, ("BatchCallback", "handle", [str(token)]))
    with pytest.raises(JobCancelled):
        skipped.wait()
    assert not token.exists()
    ran = run_batch(jobs, ("BatchCallback", "handle", [str(token)]), run_callback_on_failure=True)
    assert ran.wait() == 4
    assert token.read_text().splitlines() == ["[4, null]"]


def test_capture_holds_the_batch_until_run_all(
    bgjobs_capture: RecordedJobs, tmp_path: Path
) -> None:
    token = tmp_path / "token"
    handle = run_batch(
        [("Square", "handle", [n]) for n in (3, 4)], ("BatchCallback", "handle", [str(token)])
    )
    bgjobs_capture.assert_enqueued("Square", "handle", count=2)
    [callback] = bgjobs_capture.assert_enqueued("BatchCallback")
    assert callback.state is JobState.WAITING
    bgjobs_capture.run_all()
    assert handle.wait() == 25
    assert token.read_text().splitlines() == ["[9, 16]"]
