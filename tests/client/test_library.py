"""run_background_job(): from application code, with the daemon and without it."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bgjobctl import JobClient, run_background_job, run_background_job_async
from bgjobctl.library import close_clients, make_spec
from bgjobs.errors import DaemonUnreachable, JobFailed, RefusedError, UsageError
from bgjobs.model import JobState
from tests.support.waiting import wait_for
from tests.support.workspace import Workspace


@pytest.fixture
def configured(workspace: Workspace, monkeypatch: pytest.MonkeyPatch) -> Iterator[Workspace]:
    """The test process finds the workspace's daemon the way an application would."""
    monkeypatch.setenv("BGJOBS_CONFIG", str(workspace.config_path))
    monkeypatch.setenv("BGJOBS_TEST_MARKER", workspace.marker)  # fallback runners die with us
    yield workspace
    close_clients()


def test_submit_and_wait(configured: Workspace) -> None:
    configured.start_daemon()
    handle = run_background_job("Echo", "handle", ["English Grammar 101"])
    assert handle.id == 1
    assert handle.wait(10) == ["English Grammar 101"]
    assert handle.job().state is JobState.SUCCEEDED


def test_failure_raises_with_the_jobs_error(configured: Workspace) -> None:
    configured.start_daemon()
    handle = run_background_job("Fail", "handle", ["broken"])
    with pytest.raises(JobFailed) as failure:
        handle.wait(10)
    assert failure.value.job.error is not None
    assert failure.value.job.error.summary() == "ValueError: broken"


def test_refused_and_bad_arguments(configured: Workspace) -> None:
    configured.start_daemon()
    with pytest.raises(RefusedError):
        run_background_job("Nope", "handle")
    with pytest.raises(Exception, match="timezone-aware"):
        run_background_job("Echo", "handle", at=datetime.now())
    with pytest.raises(Exception, match="priority"):
        run_background_job("Echo", "handle", priority="urgent")
    with pytest.raises(Exception, match="cannot be encoded"):
        run_background_job("Echo", "handle", [object()])
    # A lone surrogate has no UTF-8; nesting past the encoder's depth: usage errors too.
    with pytest.raises(UsageError, match=r"cannot be encoded.*surrogates"):
        run_background_job("Echo", "handle", ["a\ud800"])
    deep: list[object] = []
    for _ in range(5000):
        deep = [deep]
    with pytest.raises(UsageError, match=r"cannot be encoded.*recursion"):
        run_background_job("Echo", "handle", [deep])
    with configured.client() as client:
        assert sum(client.stats().counts.values()) == 0


def test_delay_at_and_priority(configured: Workspace) -> None:
    configured.start_daemon()
    delayed = run_background_job("Echo", "handle", [1], 0.5, priority="high")
    at = datetime.now(UTC) + timedelta(seconds=0.5)
    timed = run_background_job("Echo", "handle", [2], at=at)
    assert delayed.job().state is JobState.SCHEDULED
    assert delayed.job().priority.value == "high"
    assert delayed.wait(10) == [1] and timed.wait(10) == [2]
    started = timed.job().started_at
    assert started is not None and started >= at


def test_one_connection_shared_by_threads(configured: Workspace) -> None:
    configured.start_daemon()
    ids: list[int] = []
    lock = threading.Lock()

    def submit_many() -> None:
        for n in range(25):
            handle = run_background_job("Echo", "handle", [n])
            with lock:
                ids.append(handle.id or 0)

    threads = [threading.Thread(target=submit_many) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(ids) == list(range(1, 201))
    client = configured.client()
    wait_for(lambda: client.stats().counts["succeeded"] == 200, what="200 jobs")


def test_a_forked_child_gets_its_own_connection(configured: Workspace) -> None:
    configured.start_daemon()
    parent = run_background_job("Echo", "handle", ["parent"])
    pid = os.fork()
    if pid == 0:  # the child: the inherited connection must not be shared
        try:
            code = 0 if run_background_job("Echo", "handle", ["child"]).wait(10) == ["child"] else 1
        except BaseException:  # noqa: BLE001  # a forked child must always exit
            code = 2
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert parent.wait(10) == ["parent"]
    assert run_background_job("Echo", "handle", ["after"]).wait(10) == ["after"]


def test_fallback_spools_the_job_and_a_drainer_runs_it_when_no_daemon(
    configured: Workspace,
) -> None:
    record = configured.root / "record"
    handle = run_background_job("Record", "handle", [str(record), "offline"])
    assert handle.spooled is not None
    wait_for(
        lambda: record.exists() and "end offline" in record.read_text(),
        what="the drainer to run the job",
    )
    handle.wait(30)
    assert handle.id is not None
    assert "taken from the spool by bgjobd.drain@" in configured.log()


def test_fallback_error_raises(configured: Workspace) -> None:
    with pytest.raises(DaemonUnreachable):
        run_background_job("Echo", "handle", fallback="error")


def test_explicit_client_object(configured: Workspace) -> None:
    configured.start_daemon()
    client = JobClient(config=str(configured.config_path))
    try:
        assert client.submit(make_spec("Echo", "handle", [3])).wait(10) == [3]
    finally:
        client.close()


def test_the_asyncio_twin(configured: Workspace) -> None:
    configured.start_daemon()

    async def main() -> list[Any]:
        handles = await asyncio.gather(
            *(run_background_job_async("Echo", "handle", [n]) for n in range(20))
        )
        return await asyncio.gather(*(handle.wait(10) for handle in handles))

    assert asyncio.run(main()) == [[n] for n in range(20)]

    async def failing() -> None:
        await (await run_background_job_async("Fail", "handle", ["async"])).wait(10)

    with pytest.raises(JobFailed, match="ValueError: async"):
        asyncio.run(failing())


def test_a_restarted_daemon_is_reached_again_without_falling_back(configured: Workspace) -> None:
    daemon = configured.start_daemon()
    assert run_background_job("Echo", "handle", [1], fallback="error").wait(10) == [1]
    assert daemon.stop() == 0
    configured.start_daemon()
    handle = run_background_job("Echo", "handle", [2], fallback="error")
    assert handle.id is not None and handle.wait(10) == [2]
