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
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field, replace
from typing import Final

from msgspec.structs import replace as replace_struct

from bgjobd import batches, chains, locks, outcomes, submission
from bgjobd.attempts import AttemptResult, Attempts, RunningAttempt
from bgjobd.concurrency import ConcurrencyLimits
from bgjobd.events import EventHub
from bgjobd.joblog import NO_JOB, JobLog, describe_params
from bgjobd.journal import Journal
from bgjobd.scheduler import Scheduler
from bgjobd.store.base import JobQuery, KeyTaken, NewJob, Store, WaitingEntry
from bgjobd.workers import WorkerProcess
from bgjobs.config import Config
from bgjobs.errors import InvalidState, NotFound, RefusedError
from bgjobs.model import ErrorInfo, JobInfo, JobSpec, JobState, Outcome
from bgjobs.protocol import ErrorCode

_THROUGHPUT_WINDOW: Final = 60.0


@dataclass
class _Batch:
    """What one submit stored, for its commit's callback."""

    results: list[tuple[list[int], bool]] = field(default_factory=list)
    added: list[tuple[NewJob, list[int]]] = field(default_factory=list)
    """Jobs for the scheduler: (first row, ids of the links)."""
    started: list[tuple[WorkerProcess, JobInfo]] = field(default_factory=list)
    """Jobs stored as running (the fast path), with their worker."""
    batches: list[tuple[list[NewJob], list[int]]] = field(default_factory=list)
    """Batches stored: their rows (the callback first) and ids."""


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
        """Dispatches waiting for a worker."""
        self._in_flight = 0
        """Attempts handed to workers and not yet recorded."""
        self._all_ended = asyncio.Event()
        self._all_ended.set()
        self._draining = False
        self.shutting_down = False
        """Set first when the daemon stops: from then on every request is refused."""
        self._cancel_waiters: dict[int, asyncio.Event] = {}
        self._recent_finishes: deque[float] = deque()
        self.attempt_listeners: list[Callable[[JobInfo, AttemptResult], None]] = []
        """Called after every attempt with the job (as it ran) and how it ended: metrics."""
        attempts.progress_listeners.append(self._progressed)

    # start and stop ----------------------------------------------------------------------

    def start(self) -> None:
        self.scheduler.load()
        self.scheduler.start()
        self._pump()

    def wake(self) -> None:
        """Start ready jobs on free workers (after recovery queued some)."""
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
        # Dispatches still waiting for a worker give up: their jobs stay queued.
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._all_ended.wait(), timeout)
        if self._in_flight:
            await self.attempts.interrupt_all()
            await self._all_ended.wait()
        with contextlib.suppress(Exception):
            await self.journal.committed()

    # submitting ----------------------------------------------------------------------------

    def submit(
        self,
        specs: Sequence[JobSpec],
        on_stored: Callable[[list[tuple[list[int], bool]] | BaseException], None],
    ) -> None:
        """Store the jobs (all or none). Once they are committed, `on_stored` gets per spec
        the ids of its links (one for a plain job) and whether it already existed
        (`unique`), or the error that kept them from being stored. Refusals and bad
        parameters raise at once, storing nothing.

        A callback rather than a coroutine or future: a submit is the hottest request, and
        this way its reply goes out from inside the commit, with no task and no hop
        through the event loop's queue.

        A store that cannot take them now (a full disk, a lost database) raises
        StoreFull or StoreUnavailable at once, before anything is written."""
        self.journal.admit()
        now = time.time()
        built = [self._build(spec, now) for spec in specs]
        batch = _Batch()
        for rows in built:
            self._store(rows, batch, now, may_start=len(built) == 1)

        def on_commit(failure: BaseException | None) -> None:
            if failure is not None:
                for worker, job in batch.started:
                    self._give_back(worker, job)
                on_stored(failure)
                return
            on_stored(batch.results)
            for worker, job in batch.started:
                self._publish_later(job)
                self._begin(WaitingEntry.of(job), worker, job)
            for row, ids in batch.added:
                self._accepted(row, ids)
            for rows, ids in batch.batches:
                self._accepted_batch(rows, ids)
            self._pump()

        self.journal.when_committed(on_commit)

    def _store(self, rows: list[NewJob], batch: _Batch, now: float, *, may_start: bool) -> None:
        """One spec's rows into the batch: the live job with its unique key, the job
        stored with its idempotency key, or the rows stored, as running at once when the
        fast path allows (`may_start`)."""
        key = rows[0].unique_key
        existing = self.store.find_live_unique(key) if key else None
        if existing is not None:
            batch.results.append(([existing], True))
            return
        worker = self._idle_worker_for(rows[0]) if may_start else None
        if worker is not None:
            rows[0] = replace(
                rows[0], state=JobState.RUNNING, started_at=now, worker_pid=worker.pid
            )
        try:
            ids = self.store.add(rows)
        except BaseException as exc:
            if worker is not None:
                self._free_slot(_entry_of_row(rows[0]), worker)
            if isinstance(exc, KeyTaken):
                # Sent before (a resend after a timeout or a broken connection, or its
                # fallback runner got there first): that job is the answer.
                batch.results.append((exc.job_ids, True))
                return
            raise
        if worker is not None:
            batch.started.append((worker, submission.started_job(rows[0], ids)))
        elif rows[0].batch_callback:
            batch.batches.append((rows, ids))
            # A batch is answered with its callback's id alone, first and last (as a resend
            # of it is, found by its key): the job whose result is the batch's.
            ids = ids[:1]
        else:
            batch.added.append((rows[0], ids))
        batch.results.append((ids, False))

    def _build(self, spec: JobSpec, now: float) -> list[NewJob]:
        try:
            return submission.build(self.config, spec, now, self.owner)
        except RefusedError as exc:
            self.log.security(
                f"{spec.class_name}::{spec.method}",
                f"refused submit: {exc} (params: {describe_params(spec.params)})",
            )
            raise

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

    def _accepted_batch(self, rows: list[NewJob], ids: list[int]) -> None:
        """A batch stored: its members are scheduled, its callback waits for them."""
        callback = rows[0]
        self.log.info(
            f"{callback.class_name}::{callback.method}",
            f"job {ids[0]} waits for its batch of {len(ids) - 1} jobs ({ids[1]}-{ids[-1]})",
        )
        for row, job_id in zip(rows[1:], ids[1:], strict=True):
            self._accepted(row, [job_id])
        if self.events.has_listeners:
            job = self.store.get(ids[0])
            if job is not None:
                self.events.publish(job)

    # dispatching ---------------------------------------------------------------------------

    def _on_due(self, entries: list[WaitingEntry]) -> None:
        """Due jobs join the ready queue. Those a free worker takes at once go from
        scheduled straight to running (a claim accepts a due job); only the rest are
        marked queued: one statement fewer per job when workers keep up."""
        for entry in entries:
            self.scheduler.add_ready(entry)
        dispatched = self._pump()
        waiting = [entry.job_id for entry in entries if entry.job_id not in dispatched]
        if waiting:
            for job_id in self.store.promote(waiting):
                self._publish_id_later(job_id)

    def _pump(self) -> set[int]:
        """Start ready jobs while slots are free; returns the ids started (or waiting for a
        worker). With a worker idle, the attempt is handed over at once."""
        dispatched: set[int] = set()
        while self._free_slots > 0 and not self._draining:
            entry = self.scheduler.pop_ready()
            if entry is None:
                break
            if entry.job_id in dispatched or not self.limits.try_start(entry):
                continue  # a job listed twice starts once
            self._free_slots -= 1
            dispatched.add(entry.job_id)
            worker = self.attempts.pool.take_idle()
            if worker is None:
                self._start_task(self._execute(entry))
            else:
                self._claim_and_begin(entry, worker)  # its slot comes back if it cannot
        return dispatched

    def _start_task(self, work: Coroutine[None, None, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _idle_worker_for(self, row: NewJob) -> WorkerProcess | None:
        """The fast path of a submit: a job due now, with a worker idle and no job ahead of
        it, is stored as already running (no claim follows) and starts once committed."""
        eligible = (
            row.state is JobState.QUEUED
            and not self._draining
            and self._free_slots > 0
            and self.scheduler.ready_count == 0
            and self.limits.limit_of(row.class_name) is None
        )
        worker = self.attempts.pool.take_idle() if eligible else None
        if worker is not None:
            self._free_slots -= 1
            self.limits.try_start(_entry_of_row(row))
        return worker

    def _give_back(self, worker: WorkerProcess, job: JobInfo) -> None:
        """A fast-path start that did not happen (its commit failed)."""
        self._free_slot(WaitingEntry.of(job), worker)

    async def _execute(self, entry: WaitingEntry) -> None:
        """Wait for a worker (all are starting, or `isolation = "fresh"`), then start."""
        try:
            worker = await self.attempts.pool.acquire()
        except BaseException:
            self._free_slot(entry, None)
            raise
        if not self._claim_and_begin(entry, worker):
            self._pump()

    def _claim_and_begin(self, entry: WaitingEntry, worker: WorkerProcess) -> bool:
        """Claim the job for `worker` and hand its attempt over. False if no attempt began
        (the job was cancelled meanwhile, or an error): the slot and the worker are given
        back, without starting the next job (the caller is in, or calls, the pump)."""
        try:
            job = self.store.claim(entry.job_id, self.owner, worker.pid, time.time())
        except Exception as exc:  # noqa: BLE001  # one job's trouble must not stop the daemon
            self._internal_error(entry, None, exc)
            self._release_slot(entry, worker)
            return False
        if job is None:  # cancelled (or claimed elsewhere) since it was queued
            self._release_slot(entry, worker)
            return False
        # The claim commits with the next batch; the attempt does not wait for it. A crash
        # before that re-runs the job from `queued`.
        self._publish_later(job)
        return self._begin(entry, worker, job)

    def _begin(self, entry: WaitingEntry, worker: WorkerProcess, job: JobInfo) -> bool:
        """Hand the attempt to its worker now; `_ended` records it."""

        def ended(result: AttemptResult) -> None:
            self._ended(entry, worker, job, result)

        try:
            self.attempts.begin(worker, job, job.attempts, ended)
        except Exception as exc:  # noqa: BLE001  # one job's trouble must not stop the daemon
            self._internal_error(entry, job, exc)
            self._release_slot(entry, worker)
            return False
        self._in_flight += 1
        self._all_ended.clear()
        return True

    def _ended(
        self, entry: WaitingEntry, worker: WorkerProcess, job: JobInfo, result: AttemptResult
    ) -> None:
        """An attempt ended: record it, then the worker takes the next job. Called from
        the worker pipe's callback, so nothing may escape."""
        try:
            self.record_attempt(job, result)
        except Exception as exc:  # noqa: BLE001  # one job's trouble must not stop the daemon
            try:
                self._internal_error(entry, job, exc)
            except Exception as again:  # noqa: BLE001  # e.g. the store itself is failing
                self.log.error(NO_JOB, f"job {job.id}: could not record its end: {again!r}")
        finally:
            self._in_flight -= 1
            if not self._in_flight:
                self._all_ended.set()
            self._free_slot(entry, worker)

    def _internal_error(self, entry: WaitingEntry, job: JobInfo | None, exc: Exception) -> None:
        self.log.error(NO_JOB, f"job {entry.job_id}: internal error: {exc!r}")
        if job is not None:
            failure = ErrorInfo(type="InternalError", message=repr(exc), hierarchy=[])
            now = time.time()
            self.record_attempt(job, AttemptResult(Outcome.CRASHED, now, now, None, error=failure))

    def _free_slot(self, entry: WaitingEntry, worker: WorkerProcess | None) -> None:
        """An attempt is over (or never began): see `_release_slot`; then the next ready
        job starts."""
        self._release_slot(entry, worker)
        self._pump()

    def _release_slot(self, entry: WaitingEntry, worker: WorkerProcess | None) -> None:
        """The worker back to the pool (or replaced), the slot and the class's concurrency
        count free."""
        if worker is not None:
            self.attempts.pool.release(worker, reusable=worker.alive)
        self._free_slots += 1
        for released in self.limits.finished(entry):
            self.scheduler.add_ready(released)

    # finishing -----------------------------------------------------------------------------

    def record_attempt(self, job: JobInfo, result: AttemptResult) -> None:
        """Record how an attempt ended and schedule what follows (a retry, the next link)."""
        for listener in self.attempt_listeners:
            listener(job, result)
        recorded = outcomes.record(self.config, self.store, self.log, job, result)
        done = recorded.job
        if done.state.is_final:
            self._count_finish(result.finished_at)
        if recorded.retry_at is not None:
            self.scheduler.add_scheduled(WaitingEntry.of(done, recorded.retry_at))
        elif done.state is JobState.QUEUED:
            self.scheduler.add_ready(WaitingEntry.of(done, time.time()))
        for released in (recorded.released, recorded.released_callback):
            if released is not None:
                self.scheduler.add_ready(WaitingEntry.of(released))
                self._publish_later(released)
        for link_id in recorded.cancelled_links:
            self._publish_id_later(link_id)
        self._publish_later(done, result.outcome)
        waiter = self._cancel_waiters.pop(job.id, None)
        if waiter is not None:
            self.journal.after_commit(waiter.set)

    def adopted(
        self, entries: Sequence[tuple[WaitingEntry, JobState]], job_ids: Sequence[int]
    ) -> None:
        """Jobs taken over from a fallback drainer (bgjobd.spoolimport), committed: the
        queued and scheduled ones join the scheduler, and whoever watches them hears."""
        for entry, state in entries:
            if state is JobState.SCHEDULED:
                self.scheduler.add_scheduled(entry)
            else:
                self.scheduler.add_ready(entry)
        for job_id in job_ids:
            self._publish_id_later(job_id)
        self._pump()

    # requests ------------------------------------------------------------------------------

    def get(self, job_id: int) -> JobInfo:
        job = self.store.get(job_id)
        if job is None:
            raise NotFound(ErrorCode.NOT_FOUND, f"no job {job_id}")
        return self.with_progress(job)

    def with_progress(self, job: JobInfo) -> JobInfo:
        """The job with its running attempt's latest progress, which only the daemon's
        memory holds (an attempt does not outlive its daemon)."""
        if job.state is not JobState.RUNNING:
            return job
        running = self.attempts.running.get(job.id)
        if running is None or running.progress is None:
            return job
        return replace_struct(
            job, progress=running.progress, progress_message=running.progress_message
        )

    async def cancel(self, job_id: int, reason: str = "cancelled by request") -> JobInfo:
        job = self.get(job_id)
        if job.state.is_final:
            raise InvalidState(ErrorCode.INVALID_STATE, f"job {job_id} already {job.state.value}")
        if job.state is JobState.RUNNING:
            return await self._cancel_running(job, reason)
        recorded = batches.cancel_reason(job, reason)
        cancelled = self.store.cancel_waiting(job_id, recorded, time.time())
        if cancelled is None:  # it started meanwhile
            return await self.cancel(job_id, reason)
        self.log.warning(job.label, f"job {job_id} cancelled while {job.state.value} ({reason})")
        for link_id in outcomes.end_chain(self.store, self.log, cancelled):
            self._publish_id_later(link_id)
        followup = outcomes.end_batch_member(self.store, self.log, cancelled)
        if followup.released is not None:
            self.scheduler.add_ready(WaitingEntry.of(followup.released))
            self._publish_later(followup.released)
            self._pump()
        for other_id in followup.cancelled:
            self._publish_id_later(other_id)
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
        refusal = batches.retry_refusal(job)
        if refusal:
            raise InvalidState(ErrorCode.INVALID_STATE, refusal)
        requeued = self.store.requeue(job_id, time.time())
        if requeued is None:
            raise InvalidState(ErrorCode.INVALID_STATE, f"job {job_id} changed meanwhile")
        chains.revive_rest(self.store, job)
        batches.revive(self.store, job)
        self.log.info(job.label, f"job {job_id} retried with fresh attempts")
        self.scheduler.add_ready(WaitingEntry.of(requeued))
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

    def _progressed(self, running: RunningAttempt) -> None:
        """A progress update is an event of its own. Nothing is stored, but it goes out
        after the commit in progress, so it never comes before the event of the job's
        start (committed lazily) or after the event of its end."""
        self._publish_later(self.with_progress(running.job))

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


def _entry_of_row(row: NewJob) -> WaitingEntry:
    """For the concurrency count of a job not stored yet (it counts by class)."""
    return WaitingEntry(row.run_at, 0, row.priority.rank, row.class_name)
