"""Dispatch: free workers take jobs from the store, one claim each, and hand them their
attempts; an attempt's end frees its slot for the next claim.

What a claim may take is the `Claims` given: a daemon's `SharedQueue` (every job of the
store's queue), or a one-shot runner's own jobs (`bgjobd.oneshot.OwnJobs`).

Named queues (`[queues.NAME]`) share the worker pool but not its slots: each queue has its
own number of them (`QueueSlots`), claims only its own jobs into them, and so a queue whose
slots are all taken by long jobs never holds up another's. The pool has as many workers as
all queues have slots, so a queue with a free slot always has a worker (idle, or starting).

The store is the queue (`Store.claim_next` honours priorities and every class's limit
across all the processes sharing it), so no queue is kept here: only how many slots are
free, a flag saying whether a claim may find work (it found none, and no news came since:
a submit, a due time, an end that frees a limit, another process's commit), the timer of
the next due time, and a watch on other processes' commits (`bgjobd.notices`: their
submits claimed here, their cancels obeyed here).

How an attempt's end is recorded is not decided here: `record` (the engine's) does it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Protocol

from bgjobd.attempts import AttemptResult, Attempts
from bgjobd.duetimer import DueTimer
from bgjobd.joblog import NO_JOB, JobLog
from bgjobd.notices import ChangeWatch
from bgjobd.publisher import Publisher
from bgjobd.store.base import NewJob, Store
from bgjobd.store.offline import StoreRetry, is_transient
from bgjobd.workers import WorkerProcess
from bgjobs.model import DEFAULT_QUEUE, ErrorInfo, JobInfo, JobState, Outcome
from bgjobs.rates import Rate

UNRECORDED_RETRY_SECONDS: Final = 1.0
"""How often the ends of attempts that found the store busy are offered to it again."""
RATE_SLOT_LATE_SECONDS: Final = 0.001
"""The rate timer fires this long after a window frees a start: never before it (the
store's clock and the loop's may differ by rounding), which would claim nothing and re-arm
the timer for the same instant."""

LOST_CLAIM: Final = "its claim was lost with the store's connection; another node has the job"

Record = Callable[[JobInfo, AttemptResult], None]


class Claims(Protocol):
    """The jobs a dispatcher takes, and their due times."""

    def claim_batch(
        self,
        owner: str,
        worker_pids: Sequence[int],
        now: float,
        limits: Mapping[str, int],
        queue: str,
        *,
        rates: Mapping[str, Rate] | None = None,
    ) -> list[JobInfo]:
        """Start the next jobs' attempts of `queue` as `owner`'s, one per worker in turn,
        honouring `limits` and `rates` across every process: the jobs started, each naming
        its worker (`worker_pid`); fewer (or none) when the queue has fewer to start now."""
        ...

    def next_rate_slot(self, rates: Mapping[str, Rate], now: float) -> float | None:
        """When a start frees for a job that waits for its class's rate, if one does."""
        ...

    def waiting(self, most: int, queue: str) -> int:
        """How many jobs (up to `most`) of `queue` are queued for a claim."""
        ...

    def next_due(self) -> float | None:
        """The earliest due time of a scheduled job."""
        ...

    def promote_due(self, now: float) -> list[int]:
        """Scheduled jobs due by `now` join the queue; returns them."""
        ...


class SharedQueue:
    """A daemon's claims: any job of the store's queue (not `run_job.py`'s own)."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def claim_batch(
        self,
        owner: str,
        worker_pids: Sequence[int],
        now: float,
        limits: Mapping[str, int],
        queue: str,
        *,
        rates: Mapping[str, Rate] | None = None,
    ) -> list[JobInfo]:
        return self._store.claim_batch(owner, worker_pids, now, limits, rates, queue=queue)

    def next_rate_slot(self, rates: Mapping[str, Rate], now: float) -> float | None:
        return self._store.next_rate_slot(rates, now)

    def waiting(self, most: int, queue: str) -> int:
        return len(self._store.queued_in_order(most, queue))

    def next_due(self) -> float | None:
        return self._store.next_due()

    def promote_due(self, now: float) -> list[int]:
        return self._store.promote_due(now)


@dataclass
class QueueSlots:
    """One queue's share of this node's workers."""

    name: str
    size: int
    free: int
    may_claim: bool = True
    """Whether a claim may find work: False once one found none, until news."""

    @property
    def busy(self) -> int:
        """Slots taken: attempts running, or about to."""
        return self.size - self.free


class Dispatcher:
    def __init__(
        self,
        *,
        store: Store,
        attempts: Attempts,
        log: JobLog,
        owner: str,
        limits: Mapping[str, int],
        publisher: Publisher,
        record: Record,
        claims: Claims | None = None,
        queues: Mapping[str, int] | None = None,
        rates: Mapping[str, Rate] | None = None,
    ) -> None:
        """`queues`: each queue's slots (by default the pool's size, all `default`'s)."""
        self._store = store
        self._claims = claims or SharedQueue(store)
        self._attempts = attempts
        self._pool = attempts.pool
        self._log = log
        self._owner = owner
        self.limits = limits
        """Per-class concurrency limits (`max_concurrency`, 1 for `overlap = false`)."""
        self.rates: Mapping[str, Rate] = rates or {}
        """Per-class rate limits (`rate_limit`)."""
        self._rate_timer: asyncio.TimerHandle | None = None
        """Armed while a job waits for its rate: when the window frees a start for it."""
        self._rate_timer_at = float("inf")
        self._publisher = publisher
        self._record = record
        self.due = DueTimer(self._claims, self._on_due)
        sizes = {DEFAULT_QUEUE: self._pool.size} if queues is None else queues
        self.queues = {name: QueueSlots(name, size, size) for name, size in sizes.items()}
        self._in_turn = [slots for slots in self.queues.values() if slots.size]
        """The queues with slots, in the order a pump serves them."""
        self._waiting: set[asyncio.Task[None]] = set()
        """Dispatches waiting for a worker."""
        self._in_flight = 0
        """Attempts handed to workers and not yet recorded."""
        self._all_ended = asyncio.Event()
        self._all_ended.set()
        self._draining = False
        self._changes: ChangeWatch | None = None
        self._unrecorded: list[tuple[JobInfo, AttemptResult]] = []
        """Ends of attempts that found the store locked, to offer it again."""
        self._retry_timer: asyncio.TimerHandle | None = None

    # start and stop ----------------------------------------------------------------------

    def start(self) -> None:
        self._store.changed()  # the baseline: what is there now is read below
        self.due.refresh()
        self._changes = ChangeWatch(self._store, self.changed_elsewhere, self._log)
        self._changes.start()
        self.pump()

    async def drain(self, timeout: float) -> None:
        """Stop dispatching; wait up to `timeout` for running attempts, then interrupt them
        (they stay queued for the next start without losing an attempt)."""
        self._draining = True
        self.due.stop()
        self._disarm_rate_timer()
        if self._changes is not None:
            await self._changes.stop()
        # Dispatches still waiting for a worker give up: their jobs stay queued.
        for task in list(self._waiting):
            task.cancel()
        await asyncio.gather(*list(self._waiting), return_exceptions=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._all_ended.wait(), timeout)
        if self._in_flight:
            await self._attempts.interrupt_all()
            await self._all_ended.wait()
        # Ends still waiting for a locked store get a last try now, before the store
        # closes (their timer must not fire after it); what still fails is recorded at the
        # next start, from the workers' outcome files.
        if self._retry_timer is not None:
            self._retry_timer.cancel()
            self._retry_timer = None
        if self._unrecorded:
            self._record_unrecorded()

    @property
    def busy(self) -> int:
        """Slots taken in every queue: attempts running, or about to."""
        return sum(slots.busy for slots in self._in_turn)

    # news ----------------------------------------------------------------------------------

    def notice_work(self, queue: str | None = None) -> None:
        """A claim (of `queue`, or of any) may find work now (the next `pump` tries)."""
        if queue is None:
            for slots in self._in_turn:
                slots.may_claim = True
        elif (named := self.queues.get(queue)) is not None:
            named.may_claim = True

    def wake(self) -> None:
        """A claim may find work: free slots claim at once."""
        self.notice_work()
        self.pump()

    def changed_elsewhere(self) -> None:
        for job_id in self._store.lost_claims():
            self._attempts.interrupt(job_id, LOST_CLAIM)
        for job_id, reason in self._store.cancel_requests(self._owner):
            self._attempts.cancel(job_id, reason)
        self._publisher.stored_elsewhere()
        if self._draining:
            return
        self.due.refresh()
        self.wake()

    def _on_due(self) -> None:
        """The timer: every scheduled job now due joins the queue, in one statement."""
        if self._draining:
            return
        try:
            promoted = self._claims.promote_due(time.time())
        except Exception as exc:  # noqa: BLE001  # the next due time or change retries
            self._log.error(NO_JOB, f"queueing due jobs failed: {exc!r}")
            return
        if promoted:
            self.wake()
            # Those a free worker took at once went from scheduled straight to running (as
            # their claim's event says); only the others are news as queued.
            for job_id in promoted:
                job = self._store.get(job_id) if self._publisher.watched else None
                if job is not None and job.state is JobState.QUEUED:
                    self._publisher.later(job)

    # claiming ------------------------------------------------------------------------------

    def pump(self) -> None:
        """Claim jobs for free slots until the store has none to give. With a worker idle,
        the attempt is handed over at once; else it starts once one is ready."""
        for slots in self._in_turn:
            self._pump(slots)

    def _pump(self, slots: QueueSlots) -> None:
        while slots.free > 0 and slots.may_claim and not self._draining:
            workers: list[WorkerProcess] = []
            while len(workers) < slots.free and (worker := self._pool.take_idle()) is not None:
                workers.append(worker)
            if not workers:
                self._wait_for_workers(slots)
                return
            # The idle workers' jobs in one claim (on PostgreSQL one statement, however many).
            jobs = {job.worker_pid: job for job in self._claim(workers, slots)}
            for worker in workers:
                if (job := jobs.get(worker.pid)) is None:
                    self._pool.release(worker, reusable=True)
                else:
                    slots.free -= 1
                    self._begin(worker, job, slots)
            if len(jobs) < len(workers):
                return

    def _wait_for_workers(self, slots: QueueSlots) -> None:
        """No worker is idle (they are starting, or each attempt gets a fresh one): one
        waits for a worker per queued job that a free slot could take, and claims once
        it has one (the claim names the worker)."""
        wanted = self._claims.waiting(slots.free, slots.name)
        if not wanted:
            slots.may_claim = False
            return
        for _ in range(wanted):
            slots.free -= 1
            self._wait(self._claim_when_ready(slots))

    def _wait(self, work: Coroutine[None, None, None]) -> None:
        task = asyncio.create_task(work)
        self._waiting.add(task)
        task.add_done_callback(self._waiting.discard)

    async def _claim_when_ready(self, slots: QueueSlots) -> None:
        """Wait for a worker, then claim the next job for it (another may have taken the
        one seen queued: the worker goes back, and the slot)."""
        try:
            worker = await self._pool.acquire()
        except BaseException:
            self._release_slot(None, slots)
            raise
        claimed = self._claim([worker], slots)
        if not claimed:
            self._free_slot(worker, slots)
            return
        self._begin(worker, claimed[0], slots)

    def _claim(self, workers: list[WorkerProcess], slots: QueueSlots) -> list[JobInfo]:
        """The workers' jobs (fewer when the queue has fewer to give now: then no claim
        may find work until news)."""
        pids = [worker.pid for worker in workers]
        now = time.time()
        try:
            jobs = self._claims.claim_batch(
                self._owner, pids, now, self.limits, slots.name, rates=self.rates
            )
        except StoreRetry:
            jobs = []  # said once by the store; its reconnection is news that wakes us
        except Exception as exc:  # noqa: BLE001  # one claim's trouble must not stop the daemon
            self._log.error(NO_JOB, f"claiming a job failed: {exc!r}")
            jobs = []
        if len(jobs) < len(pids):
            slots.may_claim = False
            self._arm_rate_timer()
        # The claims commit with the next batch; the attempts do not wait for it. A crash
        # before that re-runs the jobs from `queued`.
        for job in jobs:
            self._publisher.later(job)
        return jobs

    # rates ---------------------------------------------------------------------------------

    def _arm_rate_timer(self) -> None:
        """A claim found nothing: if a job waits for its rate, wake when a start frees for
        it (no store change announces that)."""
        if not self.rates or self._draining:
            return
        try:
            slot = self._claims.next_rate_slot(self.rates, time.time())
        except Exception as exc:  # noqa: BLE001  # the next claim that finds nothing retries
            self._log.error(NO_JOB, f"reading the rate limits' windows failed: {exc!r}")
            return
        if slot is None or slot >= self._rate_timer_at:
            return
        self._disarm_rate_timer()
        loop = asyncio.get_running_loop()
        delay = max(0.0, slot - time.time()) + RATE_SLOT_LATE_SECONDS
        self._rate_timer = loop.call_later(delay, self._rate_slot_freed)
        self._rate_timer_at = slot

    def _disarm_rate_timer(self) -> None:
        if self._rate_timer is not None:
            self._rate_timer.cancel()
            self._rate_timer = None
        self._rate_timer_at = float("inf")

    def _rate_slot_freed(self) -> None:
        self._rate_timer = None
        self._rate_timer_at = float("inf")
        if not self._draining:
            self.wake()

    # the submit's fast path ----------------------------------------------------------------

    def idle_worker_for(self, row: NewJob) -> WorkerProcess | None:
        """The fast path of a submit: a job due now, with a worker idle, a free slot in its
        queue and no job queued ahead of it there (as far as the last claim knows), is
        stored as already running (no claim follows) and starts once committed
        (`start_stored`, or `give_back` if the commit failed). Never for a class with a
        limit: only a claim counts its running jobs (and starts) across every node. Nor
        while any pause is stored, which the store decides as it stores the row
        (`Store.submit`: on PostgreSQL inside the INSERT, so a pause committed by another
        node holds without a round trip of its own); a worker given for a row stored
        queued instead comes back through `give_back`."""
        slots = self.queues.get(row.queue)
        eligible = (
            slots is not None
            and row.state is JobState.QUEUED
            and not self._draining
            and slots.free > 0
            and not slots.may_claim
            and row.class_name not in self.limits
            and row.class_name not in self.rates
        )
        worker = self._pool.take_idle() if eligible else None
        if worker is not None and slots is not None:
            slots.free -= 1
        return worker

    def start_stored(self, worker: WorkerProcess, job: JobInfo) -> None:
        """A job stored as running with `worker` (the fast path) is committed: it begins."""
        self._begin(worker, job, self.queues[job.queue])

    def give_back(self, worker: WorkerProcess, queue: str) -> None:
        """A fast-path worker whose job (of `queue`) was not stored, or not committed."""
        self._free_slot(worker, self.queues[queue])

    # attempts ------------------------------------------------------------------------------

    def _begin(self, worker: WorkerProcess, job: JobInfo, slots: QueueSlots) -> None:
        """Hand the attempt to its worker now; `_ended` records it and frees its slot."""

        def ended(result: AttemptResult) -> None:
            self._ended(worker, job, result, slots)

        try:
            self._attempts.begin(worker, job, job.attempts, ended)
        except Exception as exc:  # noqa: BLE001  # one job's trouble must not stop the daemon
            self._internal_error(job, exc)
            self._free_slot(worker, slots)
            return
        self._in_flight += 1
        self._all_ended.clear()

    def _ended(
        self, worker: WorkerProcess, job: JobInfo, result: AttemptResult, slots: QueueSlots
    ) -> None:
        """An attempt ended: record it, then the worker takes the next job (claimed along
        with the end, where the store can: `_ask_along`). Called from the worker pipe's
        callback, so nothing may escape."""
        asked = self._ask_along(worker, job, slots)
        try:
            self._record(job, result)
        except Exception as exc:  # noqa: BLE001  # one job's trouble must not stop the daemon
            if is_transient(exc):
                self._record_later(job, result, exc)
                return
            crashed = self._internal_error_result(job, exc)
            try:
                self._record(job, crashed)
            except Exception as again:  # noqa: BLE001  # e.g. the store itself is failing
                if is_transient(again):
                    self._record_later(job, crashed, again)  # not left running for ever
                else:
                    self._log.error(NO_JOB, f"job {job.id}: could not record its end: {again!r}")
        finally:
            self._in_flight -= 1
            if not self._in_flight:
                self._all_ended.set()
            if job.class_name in self.limits:
                self.notice_work()  # a job its limit held back may go now, in any queue
            following = self._store.claimed_along() if asked else None
            if following is None:
                self._free_slot(worker, slots)
            else:
                # The worker and its slot go on to the job claimed with the end.
                self._publisher.later(following)
                self._begin(worker, following, slots)

    def _ask_along(self, worker: WorkerProcess, job: JobInfo, slots: QueueSlots) -> bool:
        """Whether the store was asked to claim the worker's next job with this attempt's
        end: only where a free worker would claim at once anyway and in this queue (one
        queue, no limit or rate, no link of a chain or batch whose end releases a job that
        may come first, the last claim found work) and the worker goes on as it is."""
        if (
            self._draining
            or len(self.queues) > 1
            or self.limits
            or self.rates
            or job.chain_id is not None
            or job.batch_id is not None
            or not slots.may_claim
            or not self._pool.reusable_at_once(worker)
        ):
            return False
        return self._store.claim_along_next_end(self._owner, worker.pid, slots.name, time.time())

    def _record_later(self, job: JobInfo, result: AttemptResult, exc: Exception) -> None:
        """The store stayed locked by another process past its wait (a node stopped while
        it wrote), or its server is out of reach (PostgreSQL restarting): the end is kept
        and offered again until the store takes it (or, fenced, refuses it), rather than
        failing the job or leaving it running for ever."""
        self._log.warning(
            job.label,
            f"job {job.id}: the store cannot take it now ({exc}); its end is recorded later",
        )
        self._unrecorded.append((job, result))
        if self._retry_timer is None:
            loop = asyncio.get_running_loop()
            self._retry_timer = loop.call_later(UNRECORDED_RETRY_SECONDS, self._record_unrecorded)

    def _record_unrecorded(self) -> None:
        self._retry_timer = None
        pending, self._unrecorded = self._unrecorded, []
        for job, result in pending:
            try:
                self._record(job, result)
            except Exception as exc:  # noqa: BLE001  # kept again, or said
                if is_transient(exc):
                    self._unrecorded.append((job, result))
                else:
                    self._log.error(NO_JOB, f"job {job.id}: could not record its end: {exc!r}")
        if self._unrecorded and not self._draining:
            loop = asyncio.get_running_loop()
            self._retry_timer = loop.call_later(UNRECORDED_RETRY_SECONDS, self._record_unrecorded)
        elif not self._unrecorded:
            self.pump()

    def _internal_error(self, job: JobInfo, exc: Exception) -> None:
        self._record(job, self._internal_error_result(job, exc))

    def _internal_error_result(self, job: JobInfo, exc: Exception) -> AttemptResult:
        """The attempt's end when the daemon failed it (logged): crashed, with the error."""
        self._log.error(NO_JOB, f"job {job.id}: internal error: {exc!r}")
        failure = ErrorInfo(type="InternalError", message=repr(exc), hierarchy=[])
        now = time.time()
        return AttemptResult(Outcome.CRASHED, now, now, None, error=failure)

    def _free_slot(self, worker: WorkerProcess | None, slots: QueueSlots) -> None:
        """An attempt is over (or never began): see `_release_slot`; then the next job
        starts (in any queue: the worker may be the one another queue waits for)."""
        self._release_slot(worker, slots)
        self.pump()

    def _release_slot(self, worker: WorkerProcess | None, slots: QueueSlots) -> None:
        """The worker back to the pool (or replaced), the slot free."""
        if worker is not None:
            self._pool.release(worker, reusable=worker.alive)
        slots.free += 1
