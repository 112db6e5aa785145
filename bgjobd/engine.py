"""The life of a job inside the daemon: accepted, dispatched to a worker, retried, finished;
cancelled or retried on request; recovered after a crash, or reclaimed from a dead node.

The store is the queue, shared by every node (and `run_job.py`) pointed at it: a free worker
takes the next job with a claim (`Store.claim_next`), which honours priorities and every
class's concurrency limit across all of them. The daemon keeps no queue of its own, only a
timer for the next due time and a flag saying whether a claim may find work (its own news,
or another process's commit, seen by a cheap poll of the store's change counter).

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
from bgjobd.duetimer import DueTimer
from bgjobd.events import EventHub
from bgjobd.joblog import NO_JOB, JobLog, describe_params
from bgjobd.journal import Journal
from bgjobd.store.base import (
    JobQuery,
    KeyTaken,
    NewJob,
    StaleAttempt,
    Store,
    UniqueTaken,
    WaitingEntry,
)
from bgjobd.workers import WorkerProcess
from bgjobs.config import Config
from bgjobs.errors import InvalidState, NotFound, RefusedError
from bgjobs.model import ErrorInfo, JobInfo, JobSpec, JobState, Outcome
from bgjobs.protocol import ErrorCode

_THROUGHPUT_WINDOW: Final = 60.0
CHANGES_POLL_SECONDS: Final = 0.05
"""How often the store's change counter is read: the delay before a job submitted through
another node (or a cancel sent to one) is seen here, when it did not wake us itself."""
REMOTE_CANCEL_WAIT: Final = 5.0
"""Seconds a cancel of a job running on another node waits, beyond `kill_grace`, for it
to end there."""


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
        self.due = DueTimer(store, self._on_due)
        self.limits = config.concurrency_limits
        self._may_claim = True
        """Whether a claim may find work: False once one found none, until news (a submit,
        a due time, an attempt's end that frees a limit, another process's commit)."""
        self._watcher: asyncio.Task[None] | None = None
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
        self.store.changed()  # the baseline: what is there now is read below
        self.due.refresh()
        self._watcher = asyncio.create_task(self._watch_changes())
        self._pump()

    def wake(self) -> None:
        """Start ready jobs on free workers (after recovery queued some)."""
        self._may_claim = True
        self._pump()

    def reconfigure(self, config: Config) -> None:
        self.config = config
        self.limits = config.concurrency_limits
        self.wake()

    async def _watch_changes(self) -> None:
        """Another process committed: its submits may be ours to run, its cancels may be
        for our attempts, its schedules may come due first."""
        while True:
            await asyncio.sleep(CHANGES_POLL_SECONDS)
            try:
                if self.store.changed():
                    self.changed_elsewhere()
            except Exception as exc:  # noqa: BLE001  # a store hiccup: the next poll retries
                self.log.error(NO_JOB, f"reading the store's changes failed: {exc!r}")

    def changed_elsewhere(self) -> None:
        for job_id, reason in self.store.cancel_requests(self.owner):
            self.attempts.cancel(job_id, reason)
        if self._draining:
            return
        self.due.refresh()
        self.wake()

    async def drain(self, timeout: float) -> None:
        """Stop dispatching; wait up to `timeout` for running attempts, then interrupt them
        (they stay queued for the next start without losing an attempt)."""
        self._draining = True
        self.due.stop()
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
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
                self._begin(worker, job)
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
                self._free_slot(worker)
            if isinstance(exc, KeyTaken):
                # Sent before (a resend after a timeout or a broken connection, or its
                # fallback runner got there first): that job is the answer.
                batch.results.append((exc.job_ids, True))
                return
            if isinstance(exc, UniqueTaken):
                # An equal unique job stored a moment ago by another process.
                batch.results.append(([exc.job_id], True))
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
        if row.state is JobState.SCHEDULED:
            chain = f" as link 1/{len(ids)} of chain {job_id}" if len(ids) > 1 else ""
            delay = max(row.run_at - time.time(), 0.0)
            self.log.info(
                f"{row.class_name}::{row.method}",
                f"job {job_id} delayed {delay:.3f}s{chain} (params: {describe_params(row.params)})",
            )
            self.due.add(row.run_at)
        elif row.state is JobState.QUEUED:
            # No line for a job queued to run now: its "started" line follows at once.
            self._may_claim = True
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

    def _on_due(self) -> None:
        """The timer: every scheduled job now due joins the queue, in one statement."""
        if self._draining:
            return
        try:
            promoted = self.store.promote_due(time.time())
        except Exception as exc:  # noqa: BLE001  # the next due time or change retries
            self.log.error(NO_JOB, f"queueing due jobs failed: {exc!r}")
            return
        if promoted:
            self.wake()
            # Those a free worker took at once went from scheduled straight to running (as
            # their claim's event says); only the others are news as queued.
            for job_id in promoted:
                job = self.store.get(job_id) if self.events.has_listeners else None
                if job is not None and job.state is JobState.QUEUED:
                    self._publish_later(job)

    def _pump(self) -> None:
        """Claim jobs for free slots until the store has none to give. With a worker idle,
        the attempt is handed over at once; else it starts once one is ready."""
        while self._free_slots > 0 and self._may_claim and not self._draining:
            worker = self.attempts.pool.take_idle()
            if worker is None:
                self._wait_for_workers()
                return
            job = self._claim(worker)
            if job is None:
                self.attempts.pool.release(worker, reusable=True)
                return
            self._free_slots -= 1
            self._begin(worker, job)

    def _wait_for_workers(self) -> None:
        """No worker is idle (they are starting, or each attempt gets a fresh one): one
        waits for a worker per queued job that a free slot could take, and claims once
        it has one (the claim names the worker)."""
        wanted = min(self._free_slots, len(self.store.queued_in_order(self._free_slots)))
        if not wanted:
            self._may_claim = False
            return
        for _ in range(wanted):
            self._free_slots -= 1
            self._start_task(self._execute())

    def _claim(self, worker: WorkerProcess) -> JobInfo | None:
        try:
            job = self.store.claim_next(self.owner, worker.pid, time.time(), self.limits)
        except Exception as exc:  # noqa: BLE001  # one claim's trouble must not stop the daemon
            self.log.error(NO_JOB, f"claiming a job failed: {exc!r}")
            job = None
        if job is None:
            self._may_claim = False
            return None
        # The claim commits with the next batch; the attempt does not wait for it. A crash
        # before that re-runs the job from `queued`.
        self._publish_later(job)
        return job

    def _start_task(self, work: Coroutine[None, None, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _idle_worker_for(self, row: NewJob) -> WorkerProcess | None:
        """The fast path of a submit: a job due now, with a worker idle and no job queued
        ahead of it (as far as the last claim knows), is stored as already running (no
        claim follows) and starts once committed. Never for a class with a limit: only a
        claim counts its running jobs across every node."""
        eligible = (
            row.state is JobState.QUEUED
            and not self._draining
            and self._free_slots > 0
            and not self._may_claim
            and row.class_name not in self.limits
        )
        worker = self.attempts.pool.take_idle() if eligible else None
        if worker is not None:
            self._free_slots -= 1
        return worker

    def _give_back(self, worker: WorkerProcess, job: JobInfo) -> None:
        """A fast-path start that did not happen (its commit failed)."""
        self._free_slot(worker)

    async def _execute(self) -> None:
        """Wait for a worker, then claim the next job for it (another may have taken the
        one seen queued: the worker goes back, and the slot)."""
        try:
            worker = await self.attempts.pool.acquire()
        except BaseException:
            self._release_slot(None)
            raise
        job = self._claim(worker)
        if job is None:
            self._free_slot(worker)
            return
        self._begin(worker, job)

    def _begin(self, worker: WorkerProcess, job: JobInfo) -> bool:
        """Hand the attempt to its worker now; `_ended` records it."""

        def ended(result: AttemptResult) -> None:
            self._ended(worker, job, result)

        try:
            self.attempts.begin(worker, job, job.attempts, ended)
        except Exception as exc:  # noqa: BLE001  # one job's trouble must not stop the daemon
            self._internal_error(job, exc)
            self._free_slot(worker)
            return False
        self._in_flight += 1
        self._all_ended.clear()
        return True

    def _ended(self, worker: WorkerProcess, job: JobInfo, result: AttemptResult) -> None:
        """An attempt ended: record it, then the worker takes the next job. Called from
        the worker pipe's callback, so nothing may escape."""
        try:
            self.record_attempt(job, result)
        except Exception as exc:  # noqa: BLE001  # one job's trouble must not stop the daemon
            try:
                self._internal_error(job, exc)
            except Exception as again:  # noqa: BLE001  # e.g. the store itself is failing
                self.log.error(NO_JOB, f"job {job.id}: could not record its end: {again!r}")
        finally:
            self._in_flight -= 1
            if not self._in_flight:
                self._all_ended.set()
            if job.class_name in self.limits:
                self._may_claim = True  # a job its limit held back may go now
            self._free_slot(worker)

    def _internal_error(self, job: JobInfo, exc: Exception) -> None:
        self.log.error(NO_JOB, f"job {job.id}: internal error: {exc!r}")
        failure = ErrorInfo(type="InternalError", message=repr(exc), hierarchy=[])
        now = time.time()
        self.record_attempt(job, AttemptResult(Outcome.CRASHED, now, now, None, error=failure))

    def _free_slot(self, worker: WorkerProcess | None) -> None:
        """An attempt is over (or never began): see `_release_slot`; then the next job
        starts."""
        self._release_slot(worker)
        self._pump()

    def _release_slot(self, worker: WorkerProcess | None) -> None:
        """The worker back to the pool (or replaced), the slot free."""
        if worker is not None:
            self.attempts.pool.release(worker, reusable=worker.alive)
        self._free_slots += 1

    # nodes ---------------------------------------------------------------------------------

    def reclaim(self, node: str, why: str) -> int:
        """The running jobs of a node that is gone: each attempt counts as interrupted, and
        the job goes on by its retry rules, here or on any node. Returns how many."""
        jobs = self.store.running(node)
        now = time.time()
        for job in jobs:
            started = job.started_at.timestamp() if job.started_at else now
            self.log.warning(job.label, f"job {job.id}: reclaimed from node {node} ({why})")
            self.record_attempt(
                job,
                AttemptResult(
                    Outcome.INTERRUPTED,
                    started,
                    now,
                    job.worker_pid,
                    error=ErrorInfo(
                        type="Interrupted",
                        message=f"its node {node} {why}",
                        hierarchy=["Interrupted"],
                    ),
                ),
            )
        return len(jobs)

    def abandon_attempts(self, why: str) -> int:
        """This node lost its lease: another node has (or may any moment have) reclaimed
        its jobs, so every attempt here is stopped; their ends will be refused as stale.
        Those of jobs claimed here after the reclaim (nobody reclaimed them) end as
        interrupted, given back: never cancelled, which is final."""
        running = list(self.attempts.running)
        for job_id in running:
            self.attempts.interrupt(job_id, why)
        return len(running)

    # finishing -----------------------------------------------------------------------------

    def record_attempt(self, job: JobInfo, result: AttemptResult) -> None:
        """Record how an attempt ended and schedule what follows (a retry, the next link)."""
        try:
            recorded = outcomes.record(self.config, self.store, self.log, job, result)
        except StaleAttempt:
            # Fencing: this node lost its lease meanwhile, and another reclaimed the job.
            self.log.warning(
                job.label,
                f"job {job.id}: attempt {job.attempts} ended ({result.outcome.value}) after "
                f"its node {job.owner} lost the job to another; not recorded",
            )
            self._cancel_waiters.pop(job.id, None)
            return
        for listener in self.attempt_listeners:
            listener(job, result)
        done = recorded.job
        if done.state.is_final:
            self._count_finish(result.finished_at)
        if recorded.retry_at is not None:
            self.due.add(recorded.retry_at)
        elif done.state is JobState.QUEUED:
            self._may_claim = True
        for released in (recorded.released, recorded.released_callback):
            if released is not None:
                self._may_claim = True
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
        queued and scheduled ones are ours to claim, and whoever watches them hears."""
        for entry, state in entries:
            if state is JobState.SCHEDULED:
                self.due.add(entry.run_at)
        for job_id in job_ids:
            self._publish_id_later(job_id)
        self.wake()

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
            self._publish_later(followup.released)
            self.wake()
        for other_id in followup.cancelled:
            self._publish_id_later(other_id)
        self._publish_later(cancelled)
        await self.journal.committed()
        return self.get(job_id)

    async def _cancel_running(self, job: JobInfo, reason: str) -> JobInfo:
        ended = self._cancel_waiters.setdefault(job.id, asyncio.Event())
        if not self.attempts.cancel(job.id, reason):
            self._cancel_waiters.pop(job.id, None)
            return await self._cancel_elsewhere(job, reason)
        await ended.wait()
        after = self.get(job.id)
        if after.state.is_final:
            return after
        return await self.cancel(job.id, reason)  # it failed at that moment and was rescheduled

    async def _cancel_elsewhere(self, job: JobInfo, reason: str) -> JobInfo:
        """A job running in another process (a node, `run_job.py`): the request is stored,
        and its runner, which watches for requests, stops it. On this host its lock file
        goes too (the original's way: a runner's watcher sees it go). Waits for the end,
        up to the runner's kill grace and a few seconds more."""
        locks.release(locks.lock_path(self.config.locks_dir, job.class_name, job.method, job.id))
        if self.store.request_cancel(job.id, reason) is None:
            return self.get(job.id)  # it ended meanwhile
        await self.journal.committed()
        deadline = time.monotonic() + self.config.settings.daemon.kill_grace + REMOTE_CANCEL_WAIT
        while time.monotonic() < deadline:
            after = self.get(job.id)
            if after.state is not JobState.RUNNING or after.attempts != job.attempts:
                return after
            await asyncio.sleep(CHANGES_POLL_SECONDS)
        return self.get(job.id)

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
        try:
            requeued = self.store.requeue(job_id, time.time())
        except UniqueTaken as taken:
            raise InvalidState(
                ErrorCode.INVALID_STATE,
                f"job {job_id} is unique and the equal job {taken.job_id} is still live",
            ) from None
        if requeued is None:
            raise InvalidState(ErrorCode.INVALID_STATE, f"job {job_id} changed meanwhile")
        chains.revive_rest(self.store, job)
        batches.revive(self.store, job)
        self.log.info(job.label, f"job {job_id} retried with fresh attempts")
        await self.journal.committed()
        self._publish_later(requeued)
        self.wake()
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
