"""run_background_jobs(): a bulk enqueue, sent in requests of many jobs, each stored all or
none by the daemon."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from bgjobctl import BulkIncomplete, run_background_jobs
from bgjobctl.library import close_clients, make_spec
from bgjobctl.many import JOBS_PER_REQUEST
from bgjobs.errors import RefusedError, UsageError
from bgjobs.model import JobState
from tests.support.waiting import wait_for
from tests.support.workspace import Workspace


@pytest.fixture
def configured(workspace: Workspace, monkeypatch: pytest.MonkeyPatch) -> Iterator[Workspace]:
    monkeypatch.setenv("BGJOBS_CONFIG", str(workspace.config_path))
    monkeypatch.setenv("BGJOBS_TEST_MARKER", workspace.marker)
    yield workspace
    close_clients()


def test_many_jobs_in_several_requests_are_stored_in_order_and_logged(
    configured: Workspace,
) -> None:
    configured.start_daemon()
    count = 2 * JOBS_PER_REQUEST + 500
    handles = run_background_jobs((("Echo", "handle", [n]) for n in range(count)), 3600)
    assert [handle.id for handle in handles] == list(range(1, count + 1))
    with configured.client() as client:
        assert client.stats().counts[JobState.SCHEDULED] == count
        assert client.get(count).params == [count - 1]
    delayed = re.findall(r"job (\d+) delayed", configured.log())
    assert [int(job_id) for job_id in delayed] == list(range(1, count + 1))


def test_the_jobs_run_and_each_handle_has_its_result(configured: Workspace) -> None:
    configured.start_daemon()
    handles = run_background_jobs([("Echo", "handle", [n]) for n in range(20)])
    assert [handle.wait(30) for handle in handles] == [[n] for n in range(20)]


def test_a_refused_job_refuses_its_request_and_keeps_the_ones_before(
    configured: Workspace,
) -> None:
    configured.start_daemon()
    jobs = [("Echo", "handle", [n]) for n in range(JOBS_PER_REQUEST + 300)]
    jobs[JOBS_PER_REQUEST + 100] = ("NotAllowed", "handle", [])
    with pytest.raises(RefusedError):
        run_background_jobs(jobs, 3600)
    with configured.client() as client:
        assert client.stats().counts[JobState.SCHEDULED] == JOBS_PER_REQUEST
    assert "refused submit" in configured.error_log()


def test_a_job_stored_before_under_its_key_is_the_answer_and_nothing_doubles(
    configured: Workspace,
) -> None:
    configured.start_daemon()
    specs = [make_spec("Echo", "handle", [n], 3600, key=f"k{n}") for n in range(50)]
    with configured.client() as client:
        first = client.submit(specs[10:11])
        again = client.submit(specs)
        assert again.ids[10] == first.ids[0] and again.existing[10]
        assert not any(again.existing[:10] + again.existing[11:])
        assert len(set(again.ids)) == 50
        assert client.stats().counts[JobState.SCHEDULED] == 50


def test_with_no_daemon_and_fallback_error_nothing_is_stored(configured: Workspace) -> None:
    with pytest.raises(BulkIncomplete) as raised:
        run_background_jobs([("Echo", "handle", [1])] * 3, fallback="error")
    assert raised.value.handles == []


def test_with_no_daemon_the_jobs_are_spooled_and_run(configured: Workspace) -> None:
    handles = run_background_jobs([("Echo", "handle", [n]) for n in range(3)])
    assert all(handle.id is None for handle in handles)
    assert [handle.wait(60) for handle in handles] == [[0], [1], [2]]
    wait_for(lambda: all(handle.id is not None for handle in handles))


def test_bad_jobs_are_refused_before_anything_is_sent(configured: Workspace) -> None:
    configured.start_daemon()
    with pytest.raises(Exception, match="a job is"):
        run_background_jobs([("Echo",)])  # type: ignore[list-item]
    with pytest.raises(Exception, match="iterable"):
        run_background_jobs("Echo")  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="not a single string"):
        run_background_jobs([("Echo", "handle", "abc")])
    with pytest.raises(UsageError, match="cannot be encoded"):
        run_background_jobs([("Echo", "handle", [1]), ("Echo", "handle", [object()])])
    with pytest.raises(UsageError, match=r"cannot be encoded.*surrogates"):
        run_background_jobs([("Echo", "handle", [1]), ("Echo", "handle", ["\udfff"])])
    with configured.client() as client:
        assert sum(client.stats().counts.values()) == 0
