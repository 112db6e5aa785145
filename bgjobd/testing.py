"""The testing mode for applications' own tests: a pytest plugin, active wherever bgjobs is
installed (entry point `pytest11`), with two fixtures.

    def test_signup_queues_the_login_job(client, bgjobs_capture):
        client.post("/signup", data={"user": "u1"})
        bgjobs_capture.assert_enqueued("UserLoginService", "handle", ["u1"])

    def test_signup_end_to_end(client, bgjobs_eager):
        client.post("/signup", data={"user": "u1"})   # the job has run when this returns

While either is active, `run_background_job()` and `run_background_job_async()` send
nothing to a daemon. `bgjobs_capture` records each job (queued) for assertions, and
`run_all()` runs them; `bgjobs_eager` runs each job at once, in the test's process. Both
apply the configuration's allow-list (a refused job raises `RefusedError`), retry rules and
chains, as the daemon would; delays and retry pauses are not waited for. The configuration
is found as the library finds it; override the `bgjobs_config` fixture to name one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, cast

import pytest

from bgjobd.inline import InlineJobs
from bgjobs.config import Config, load_config
from bgjobs.model import JobInfo, JobSpec
from bgjobs.protocol import Submitted


class RecordedJobs:
    """The jobs a test submitted, and assertions about them."""

    def __init__(self, config: Config, *, eager: bool) -> None:
        self.eager = eager
        self._inline = InlineJobs(config)

    @property
    def jobs(self) -> list[JobInfo]:
        """Every job submitted so far (chain links included), oldest first."""
        return list(self._inline.jobs.values())

    def submit(self, specs: Sequence[JobSpec]) -> Submitted:
        ids = [self._inline.add(spec) for spec in specs]
        if self.eager:
            for first, _ in ids:
                self._inline.run(first)
        return _submitted(ids)

    async def submit_async(self, specs: Sequence[JobSpec]) -> Submitted:
        ids = [self._inline.add(spec) for spec in specs]
        if self.eager:
            for first, _ in ids:
                await self._inline.run_async(first)
        return _submitted(ids)

    def get(self, job_id: int) -> JobInfo:
        return self._inline.jobs[job_id]

    def wait(self, job_id: int, timeout: float | None = None) -> JobInfo:
        job = self.get(job_id)
        if not job.state.is_final:
            raise TimeoutError(
                f"job {job_id} is {job.state.value}: captured jobs run only when the test "
                "calls run_all()"
            )
        return job

    def run_all(self) -> list[JobInfo]:
        """Run every queued job (and the chains they start) now; returns how each ended."""
        ended: list[JobInfo] = []
        while pending := self._inline.pending():
            ended.extend(self._inline.run(job.id) for job in pending)
        return ended

    def enqueued(
        self, class_name: str, method: str | None = None, params: Sequence[Any] | None = None
    ) -> list[JobInfo]:
        return [
            job
            for job in self.jobs
            if job.class_name == class_name
            and (method is None or job.method == method)
            and (params is None or job.params == list(params))
        ]

    def assert_enqueued(
        self,
        class_name: str,
        method: str | None = None,
        params: Sequence[Any] | None = None,
        *,
        count: int | None = None,
    ) -> list[JobInfo]:
        """The matching jobs; fails the test unless there is one (or exactly `count`)."""
        found = self.enqueued(class_name, method, params)
        wanted = f"{class_name}::{method or '*'}" + (f" {list(params)!r}" if params else "")
        if count is None and not found:
            raise AssertionError(f"no job {wanted} was enqueued; jobs: {self._summary()}")
        if count is not None and len(found) != count:
            raise AssertionError(
                f"{len(found)} job(s) {wanted} enqueued, expected {count}; jobs: {self._summary()}"
            )
        return found

    def assert_not_enqueued(self, class_name: str, method: str | None = None) -> None:
        found = self.enqueued(class_name, method)
        if found:
            raise AssertionError(f"unexpected job(s): {self._summary(found)}")

    def clear(self) -> None:
        self._inline.jobs.clear()

    def _summary(self, jobs: list[JobInfo] | None = None) -> str:
        shown = [f"{job.label}{job.params!r}" for job in (self.jobs if jobs is None else jobs)]
        return ", ".join(shown) or "none"


def _submitted(ids: list[tuple[int, int]]) -> Submitted:
    return Submitted(
        ids=[first for first, _ in ids],
        last_ids=[last for _, last in ids],
        existing=[False] * len(ids),
    )


class _BlockingFacade:
    """Stands where `bgjobctl.library` keeps its client for a daemon."""

    def __init__(self, recorded: RecordedJobs) -> None:
        self.recorded = recorded
        self.client = recorded

    def submit(self, spec: JobSpec, *, fallback: object = None) -> Any:
        from bgjobctl.client import Client
        from bgjobctl.library import JobHandle

        submitted = self.recorded.submit([spec])
        # The handle asks its client for `wait` and `get`, which the record answers.
        client = cast(Client, self.recorded)
        return JobHandle(id=submitted.ids[0], last_id=submitted.last_ids[0], client=client)


class _AsyncFacade:
    """Stands where `bgjobctl.aclient` keeps its client for a daemon."""

    def __init__(self, recorded: RecordedJobs) -> None:
        self.recorded = recorded

    async def submit(self, specs: Sequence[JobSpec]) -> Submitted:
        return await self.recorded.submit_async(specs)

    async def get(self, job_id: int) -> JobInfo:
        return self.recorded.get(job_id)

    async def wait(self, job_id: int, timeout: float | None = None) -> JobInfo:
        await asyncio.sleep(0)
        return self.recorded.wait(job_id, timeout)


def _install(monkeypatch: pytest.MonkeyPatch, recorded: RecordedJobs) -> None:
    import bgjobctl.aclient
    import bgjobctl.library

    blocking = _BlockingFacade(recorded)
    asynchronous = _AsyncFacade(recorded)
    monkeypatch.setattr(bgjobctl.library, "_client_for", lambda config, socket: blocking)
    monkeypatch.setattr(
        bgjobctl.aclient, "_client_for", lambda config, socket: (asynchronous, None)
    )


@pytest.fixture
def bgjobs_config() -> str | None:
    """The configuration the testing mode uses; None finds it as the library does."""
    return None


def _recording(monkeypatch: pytest.MonkeyPatch, config: str | None, *, eager: bool) -> RecordedJobs:
    recorded = RecordedJobs(load_config(config), eager=eager)
    _install(monkeypatch, recorded)
    return recorded


@pytest.fixture
def bgjobs_capture(monkeypatch: pytest.MonkeyPatch, bgjobs_config: str | None) -> RecordedJobs:
    """Jobs are recorded, not run: assert on them, or `run_all()`."""
    return _recording(monkeypatch, bgjobs_config, eager=False)


@pytest.fixture
def bgjobs_eager(monkeypatch: pytest.MonkeyPatch, bgjobs_config: str | None) -> RecordedJobs:
    """Every job runs at once, in this process, before the submit returns."""
    return _recording(monkeypatch, bgjobs_config, eager=True)
