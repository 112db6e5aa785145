"""The life of a job inside the daemon: accepted, scheduled, dispatched to a worker, retried,
finished; cancelled or retried on request; recovered after a crash.

Every change goes to the store first (through the journal's group commit); events go out
once it is committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Final

from bgjobd import chains, locks, outcomes, submission
from bgjobd.attempts import AttemptResult, Attempts
from bgjobd.concurrency import ConcurrencyLimits
from bgjobd.events import EventHub
from bgjobd.joblog import NO_JOB, JobLog, describe_params
from bgjobd.journal import Journal
from bgjobd.scheduler import Scheduler
from bgjobd.store.base import JobQuery, NewJob, Store, WaitingEntry
from bgjobs.config import Config
from bgjobs.errors import InvalidState, NotFound, RefusedError
from bgjobs.model import ErrorInfo, JobInfo, JobSpec, JobState, Outcome
from bgjobs.protocol import ErrorCode

_THROUGHPUT_WINDOW: Final = 60.0


class Engine:
    def __init__(
        self,
        *,
        config: Config,
        store: Store,
        journal: Journal,
        attempts: Attempts,
        events: EventHub,
        joblog: JobLog,
        owner: str,
    ) -> None:
        self.config = config
        self.store = store
        self.journal = journal
        self.attempts = attempts
        self.events = events
        self.log = joblog
        self.owner = owner
        self.scheduler = Scheduler(store, self._on_due)
        self.limits = ConcurrencyLimits(config)
        self._free_slots = attempts.pool.size
        self._tasks: set[asyncio.Task[None]] = set()
        self._draining = False
        self._cancel_waiters: dict[int, asyncio.Event] = {}
        self._recent_finishes: deque[float] = deque()
        self._loop = asyncio.get_running_loop()
        self.attempt_listeners: list[Callable[[JobInfo, AttemptResult], None]] = []
        """Called after every attempt with the job (as it ran) and how it ended: metrics."""

    # start and stop ----------------------------------------------------------------------

    def start(self) -> None:
        self.scheduler.load()
        self.scheduler.start()
        self._pump()

    def reconfigure(self, config: Config) -> None:
        self.config = config
        for entry in self.limits.reconfigure(config):
            self.scheduler.add_ready(entry)
        self._pump()

    async def drain(self, timeout: float) -> None:
        """Stop dispatching; wait up to `timeout` for running attempts, then interrupt them
        (they stay queued for the next start without losing an attempt)."""
        self._draining = True
        self.scheduler.stop()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout)
        if self._tasks:
            await self.attempts.interrupt_all()
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        with contextlib.suppress(Exception):
            await self.journal.committed()

    # submitting ----------------------------------------------------------------------------

    def submit(self, specs: Sequence[JobSpec]) -> asyncio.Future[list[tuple[list[int], bool]]]:
        """Store the jobs (all or none). The future gives, once they are committed, per spec
        the ids of its links (one for a plain job) and whether it already existed
        (`unique`). Refusals and bad parameters raise at once, storing nothing.

        A future rather than a coroutine: a submit is the hottest request, and this way its
        reply goes out from the commit's callback without a task of its own."""
        now = time.time()
        built: list[list[NewJob]] = []
        for spec in specs:
            try:
                built.append(submission.build(self.config, spec, now, self.owner))
            except RefusedError as exc:
                self.log.security(
                    f"{spec.class_name}::{spec.method}",
                    f"refused submit: {exc} (params: {describe_params(spec.params)})",
                )
                raise
        results: list[tuple[list[int], bool]] = []
        added: list[tuple[NewJob, list[int]]] = []
        for rows in built:
            key = rows[0].unique_key
            existing = self.store.find_live_unique(key) if key else None
            if existing is not None:
                results.append(([existing], True))
                continue
            ids = self.store.add(rows)
            added.append((rows[0], ids))
            results.append((ids, False))
        accepted: asyncio.Future[list[tuple[list[int], bool]]] = self._loop.create_future()

        def on_commit(committed: asyncio.Future[None]) -> None:
            if committed.exception() is not None:
                accepted.set_exception(committed.exception())  # type: ignore[arg-type]
                return
            for row, ids in added:
                self._accepted(row, ids)
            self._pump()
            accepted.set_result(results)

        self.journal.committed().add_done_callback(on_commit)
        return accepted

    def _accepted(self, row: NewJob, ids: list[int]) -> None:
        job_id = ids[0]
        entry = WaitingEntry(row.run_at, job_id, row.priority.rank, row.class_name)
        if row.state is JobState.SCHEDULED:
            chain = f" as link 1/{len(ids)} of chain {job_id}" if len(ids) > 1 else ""
            delay = max(row.run_at - time.time(), 0.0)
            self.log.info(
                f"{row.class_name}::{row.method}",
                f"job {job_id} delayed {delay:.3f}s{chain} (params: {describe_params(row.params)})",
            )
            self.scheduler.add_scheduled(entry)
        else:
            # No line for a job queued to run now: its "started" line follows at once.
            self.scheduler.add_ready(entry)
        if self.events.has_listeners:
            for link_id in ids:
                job = self.store.get(link_id)
                if job is not None:
                    self.events.publish(job)

    # dispatching ---------------------------------------------------------------------------

    def _on_due(self, entries: list[WaitingEntry]) -> None:
        promoted = set(self.store.promote([entry.job_id for entry in entries]))
        for entry in entries:
            if entry.job_id in promoted:
                promoted.discard(entry.job_id)  # a job listed twice is queued once
                self.scheduler.add_ready(entry)
                self._publish_id_later(entry.job_id)
        self._pump()

    def _pump(self) -> None:
        while self._free_slots > 0 and not self._draining:
            entry = self.scheduler.pop_ready()
            if entry is None:
                return
            if not self.limits.try_start(entry):
                continue
            self._free_slots -= 1
            task = asyncio.create_task(self._execute(entry))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _execute(self, entry: WaitingEntry) -> None:
        job: JobInfo | None = None
        try:
            async with self.attempts.worker() as worker:
                job = self.store.claim(entry.job_id, self.owner, worker.pid, time.time())
                if job is None:
                    return  # cancelled (or claimed elsewhere) since it was queued
                # The claim commits with the next batch; the attempt does not wait for it.
                # A crash before that re-runs the job from `queued`.
                self._publish_later(job)
                result = await self.attempts.run(worker, job, job.attempts)
                self.record_attempt(job, result)
        except Exception as exc:  # noqa: BLE001  # one job's trouble must not stop the daemon
            self.log.error(NO_JOB, f"job {entry.job_id}: internal error: {exc!r}")
            if job is not None:
                failure = ErrorInfo(type="InternalError", message=repr(exc), hierarchy=[])
                now = time.time()
                self.record_attempt(
                    job, AttemptResult(Outcome.CRASHED, now, now, None, error=failure)
                )
        finally:
            self._free_slots += 1
            for released in self.limits.finished(entry):
                self.scheduler.add_ready(released)
            self._pump()

    # finishing -----------------------------------------------------------------------------

    def record_attempt(self, job: JobInfo, result: AttemptResult) -> None:
        """Record how an attempt ended and schedule what follows (a retry, the next link)."""
        self._count_finish(result.finished_at)
        for listener in self.attempt_listeners:
            listener(job, result)
        recorded = outcomes.record(self.config, self.store, self.log, job, result)
        done = recorded.job
        if recorded.retry_at is not None:
            self.scheduler.add_scheduled(
                WaitingEntry(recorded.retry_at, done.id, done.priority.rank, done.class_name)
            )
        elif done.state is JobState.QUEUED:
            self.scheduler.add_ready(
                WaitingEntry(time.time(), done.id, done.priority.rank, done.class_name)
            )
        released = recorded.released
        if released is not None:
            self.scheduler.add_ready(
                WaitingEntry(
                    released.run_at.timestamp(),
                    released.id,
                    released.priority.rank,
                    released.class_name,
                )
            )
            self._publish_later(released)
        for link_id in recorded.cancelled_links:
            self._publish_id_later(link_id)
        self._publish_later(done, result.outcome)
        waiter = self._cancel_waiters.pop(job.id, None)
        if waiter is not None:
            self.journal.after_commit(waiter.set)

    # requests ------------------------------------------------------------------------------

    def get(self, job_id: int) -> JobInfo:
        job = self.store.get(job_id)
        if job is None:
            raise NotFound(ErrorCode.NOT_FOUND, f"no job {job_id}")
        return job

    async def cancel(self, job_id: int, reason: str = "cancelled by request") -> JobInfo:
        job = self.get(job_id)
        if job.state.is_final:
            raise InvalidState(ErrorCode.INVALID_STATE, f"job {job_id} already {job.state.value}")
        if job.state is JobState.RUNNING:
            return await self._cancel_running(job, reason)
        cancelled = self.store.cancel_waiting(job_id, reason, time.time())
        if cancelled is None:  # it started meanwhile
            return await self.cancel(job_id, reason)
        self.log.warning(job.label, f"job {job_id} cancelled while {job.state.value} ({reason})")
        for link_id in outcomes.end_chain(self.store, self.log, cancelled):
            self._publish_id_later(link_id)
        self._publish_later(cancelled)
        await self.journal.committed()
        return self.get(job_id)

    async def _cancel_running(self, job: JobInfo, reason: str) -> JobInfo:
        ended = self._cancel_waiters.setdefault(job.id, asyncio.Event())
        if not self.attempts.cancel(job.id, reason):
            # Running in another process (run_job.py): its own watcher sees the lock go.
            self._cancel_waiters.pop(job.id, None)
            locks.release(
                locks.lock_path(self.config.locks_dir, job.class_name, job.method, job.id)
            )
            return job
        await ended.wait()
        after = self.get(job.id)
        if after.state.is_final:
            return after
        return await self.cancel(job.id, reason)  # it failed at that moment and was rescheduled

    async def retry(self, job_id: int) -> JobInfo:
        job = self.get(job_id)
        if job.state not in (JobState.FAILED, JobState.CANCELLED):
            raise InvalidState(
                ErrorCode.INVALID_STATE,
                f"job {job_id} is {job.state.value}; only failed or cancelled jobs are retried",
            )
        requeued = self.store.requeue(job_id, time.time())
        if requeued is None:
            raise InvalidState(ErrorCode.INVALID_STATE, f"job {job_id} changed meanwhile")
        chains.revive_rest(self.store, job)
        self.log.info(job.label, f"job {job_id} retried with fresh attempts")
        self.scheduler.add_ready(
            WaitingEntry(
                requeued.run_at.timestamp(), job_id, requeued.priority.rank, requeued.class_name
            )
        )
        await self.journal.committed()
        self._publish_later(requeued)
        self._pump()
        return requeued

    async def retry_failed(self, class_name: str | None) -> list[int]:
        """Retry every job failed right now (oldest first); returns their ids."""
        ids: list[int] = []
        while True:
            page, _ = self.store.search(
                JobQuery(
                    states=[JobState.FAILED],
                    class_name=class_name,
                    limit=1000,
                    offset=len(ids),
                    oldest_first=True,
                )
            )
            ids.extend(job.id for job in page)
            if len(page) < 1000:
                break
        for job_id in ids:
            await self.retry(job_id)
        return ids

    # events and stats ----------------------------------------------------------------------

    def _publish_later(self, job: JobInfo, outcome: Outcome | None = None) -> None:
        if self.events.has_listeners:
            self.journal.after_commit(lambda: self.events.publish(job, outcome))

    def _publish_id_later(self, job_id: int) -> None:
        if self.events.has_listeners:
            job = self.store.get(job_id)
            if job is not None:
                self._publish_later(job)

    def _count_finish(self, at: float) -> None:
        self._recent_finishes.append(at)
        horizon = at - _THROUGHPUT_WINDOW
        while self._recent_finishes and self._recent_finishes[0] < horizon:
            self._recent_finishes.popleft()

    def finished_last_minute(self) -> int:
        horizon = time.time() - _THROUGHPUT_WINDOW
        while self._recent_finishes and self._recent_finishes[0] < horizon:
            self._recent_finishes.popleft()
        return len(self._recent_finishes)

    @property
    def busy(self) -> int:
        return self.attempts.pool.size - self._free_slots
