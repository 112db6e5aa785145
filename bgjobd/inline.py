"""Running jobs in this process, for the testing mode: the daemon's allow-list, retry
decisions (exception rules, `Retry`/`Fail`) and chains, without a daemon, a worker or a
store. Delays and retry pauses are not waited for and there is no deadline: a test wants
the outcome now."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import itertools
import sys
import threading
from datetime import UTC, datetime
from types import ModuleType
from typing import TYPE_CHECKING, Any

import msgspec

from bgjobd import submission
from bgjobd.retries import Directive, decide
from bgjobd.worker.execute import describe_error, resolve
from bgjobd.worker.messages import Setup
from bgjobs.config import Config
from bgjobs.model import AttemptInfo, ChainLink, JobInfo, JobSpec, JobState, Outcome
from bgjobs.signals import Fail, Retry

if TYPE_CHECKING:
    from bgjobd.worker.tracing import InlineSpan


def _now() -> datetime:
    return datetime.now(UTC)


class InlineJobs:
    """Jobs submitted in this process: recorded as the daemon would record them, and run
    here on demand."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.jobs: dict[int, JobInfo] = {}
        self._ids = itertools.count(1)
        self._setup = Setup(
            jobs_package=config.settings.jobs_package,
            base_dir=str(config.base_dir),
            allowed_jobs=config.settings.allowed_jobs,
        )
        self._package: ModuleType | None = None

    # recording -----------------------------------------------------------------------

    def add(self, spec: JobSpec) -> tuple[int, int]:
        """Record a submit (refused like the daemon refuses it); the first and last ids."""
        links = [ChainLink(spec.class_name, spec.method, spec.params), *spec.then]
        for link in links:
            submission.check_allowed(self.config, link.class_name, link.method)
        when = spec.run_at or _now()
        ids = [next(self._ids) for _ in links]
        chained = len(links) > 1
        for position, (job_id, link) in enumerate(zip(ids, links, strict=True), start=1):
            self.jobs[job_id] = JobInfo(
                id=job_id,
                class_name=link.class_name,
                method=link.method,
                params=list(link.params),
                priority=spec.priority or self.config.priority_of(link.class_name),
                state=JobState.QUEUED if position == 1 else JobState.WAITING,
                run_at=when,
                attempts=0,
                max_attempts=self.config.max_attempts_of(link.class_name),
                timeout=self.config.timeout_of(link.class_name),
                created_at=_now(),
                owner="testing",
                chain_id=ids[0] if chained else None,
                chain_position=position if chained else None,
                chain_length=len(links) if chained else None,
                trace=spec.trace,
            )
        return ids[0], ids[-1]

    def pending(self) -> list[JobInfo]:
        return [job for job in self.jobs.values() if job.state is JobState.QUEUED]

    # running -------------------------------------------------------------------------

    def run(self, job_id: int) -> JobInfo:
        """Run a queued job, and the rest of its chain, to the end; returns the last link
        reached. From synchronous code, also inside a running event loop."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self.run_async(job_id))
        ended: list[JobInfo] = []
        thread = threading.Thread(target=lambda: ended.append(asyncio.run(self.run_async(job_id))))
        thread.start()
        thread.join()
        return ended[0]

    async def run_async(self, job_id: int) -> JobInfo:
        job = self.jobs[job_id]
        while True:
            job = await self._attempts(job)
            following = self._next_link(job)
            if following is None:
                return job
            job = following

    async def _attempts(self, job: JobInfo) -> JobInfo:
        while job.state is JobState.QUEUED:
            number = job.attempts + 1
            started = _now()
            span = self._begin_span(job, number)
            try:
                value = resolve(self._setup, self._jobs_package(), job.class_name, job.method)(
                    *job.params
                )
                if inspect.isawaitable(value):
                    value = await value
            except Exception as exc:  # noqa: BLE001  # whatever the job raises is its failure
                job = self._failed(job, number, started, exc)
            else:
                job = self._ended(job, number, started, JobState.SUCCEEDED, Outcome.SUCCEEDED)
                job.result = value
            if span is not None:
                span.end(job.history[-1])
            self.jobs[job.id] = job
        return job

    def _begin_span(self, job: JobInfo, number: int) -> InlineSpan | None:
        """The attempt's span, as a worker would make it, when `[tracing]` is enabled: in the
        trace the job was submitted in, exported by the test's own tracer provider."""
        if not self.config.settings.tracing.enabled:
            return None
        from bgjobd.worker.tracing import InlineSpan

        return InlineSpan(job, number)

    def _failed(self, job: JobInfo, number: int, started: datetime, exc: Exception) -> JobInfo:
        error = describe_error(exc)
        directive = None
        if isinstance(exc, Retry):
            directive = Directive(retry=True, delay=exc.delay)
        elif isinstance(exc, Fail):
            directive = Directive(retry=False)
        decision = decide(self.config, job.class_name, number, error, directive)
        state = JobState.QUEUED if decision.retry else JobState.FAILED
        ended = self._ended(job, number, started, state, Outcome.FAILED, error=error)
        ended.max_attempts = decision.max_attempts
        if not decision.retry and decision.decided_by:
            ended.reason = f"{decision.decided_by}: no retry"
        return ended

    def _ended(
        self,
        job: JobInfo,
        number: int,
        started: datetime,
        state: JobState,
        outcome: Outcome,
        **changes: Any,
    ) -> JobInfo:
        finished = _now()
        attempt = AttemptInfo(
            number=number,
            started_at=started,
            finished_at=finished,
            outcome=outcome,
            error=changes.get("error"),
            duration=(finished - started).total_seconds(),
        )
        return msgspec.structs.replace(
            job,
            state=state,
            attempts=number,
            started_at=started,
            finished_at=finished if state.is_final else None,
            history=[*job.history, attempt],
            error=changes.get("error", job.error),
        )

    def _next_link(self, done: JobInfo) -> JobInfo | None:
        """The chain's next link, released with the result first; or, after a failure,
        the rest of the chain cancelled."""
        if done.chain_id is None or done.chain_position == done.chain_length:
            return None
        rest = [
            job
            for job in self.jobs.values()
            if job.chain_id == done.chain_id
            and (job.chain_position or 0) > (done.chain_position or 0)
        ]
        if done.state is not JobState.SUCCEEDED:
            for job in rest:
                job.state = JobState.CANCELLED
                job.reason = f"link {done.chain_position} (job {done.id}) {done.state.value}"
            return None
        following = min(rest, key=lambda job: job.chain_position or 0)
        following.params = [done.result, *following.params]
        following.state = JobState.QUEUED
        return following

    def _jobs_package(self) -> ModuleType:
        if self._package is None:
            base = str(self.config.base_dir)
            if base not in sys.path:
                sys.path.insert(0, base)
            self._package = importlib.import_module(self.config.settings.jobs_package)
        return self._package
