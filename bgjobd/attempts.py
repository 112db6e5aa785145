"""Running one attempt of a job in a worker: its lock file, deadline, cancellation, output
capture and log lines. The daemon and `run_job.py` both run every attempt through here.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Final

from bgjobd import capture, limits, locks
from bgjobd.joblog import JobLog, describe_params
from bgjobd.pool import WorkerPool
from bgjobd.retries import TIMEOUT_ERROR, Decision, Directive
from bgjobd.worker.messages import AttemptDone, Progress, RunAttempt
from bgjobd.workers import WorkerDied, WorkerProcess
from bgjobs.config import Config
from bgjobs.model import ErrorInfo, JobInfo, Outcome
from bgjobs.progress import clean_fraction, clean_message
from bgjobs.protocol import HEADER_BYTES, MAX_FRAME_BYTES
from bgjobs.sizes import format_size

LOCK_WATCH_SECONDS: Final = 0.3
"""How often running attempts check their lock file: deleting it cancels the job. It must be
missing at two checks in a row, because a worker removes it just before it reports the end
of the attempt."""
LOCK_REMOVED: Final = "lock file removed"
MAX_GIVE_BACKS: Final = 3
"""A worker dying before it takes an attempt up gives the attempt back (uncounted), unless
it happened this many times in a row: then the attempt counts as crashed."""
PARAMS_TOO_LARGE: Final = "ParamsTooLarge"
"""The error type of an attempt whose params cannot be handed to a worker at all."""


@dataclass
class AttemptResult:
    outcome: Outcome
    started_at: float
    finished_at: float
    worker_pid: int | None
    result: Any = None
    error: ErrorInfo | None = None
    directive: Directive | None = None
    note: str | None = None
    cancel_reason: str | None = None
    no_retry: str | None = None
    """Set when retrying could not help (the attempt cannot run at all): why, for the
    record; the retry rules are not asked."""
    printed: capture.Printed | None = None
    """The end of what the attempt printed, for the store; None: nothing."""

    @property
    def duration(self) -> float:
        return self.finished_at - self.started_at


@dataclass
class RunningAttempt:
    job: JobInfo
    number: int
    worker: WorkerProcess
    lock_path: str
    started_at: float = field(default_factory=time.time)
    stop_reason: Outcome | None = None
    cancel_reason: str | None = None
    stopping: asyncio.Task[None] | None = None
    has_lock: bool = False
    """The worker reported its lock file made: from then on, its absence means cancel."""
    lock_missing: int = 0
    deadline: asyncio.TimerHandle | None = None
    progress: float | None = None
    """The latest `bgjobs.progress` the attempt reported (in memory only)."""
    progress_message: str | None = None
    output_offset: int | None = None
    """Where the attempt's output starts in the job's output file (known once it began)."""

    def lock_made(self, output_offset: int) -> None:
        self.has_lock = True
        self.output_offset = output_offset


def job_tag(job: JobInfo, number: int, max_attempts: int | None = None) -> str:
    return f"job {job.id} attempt {number}/{max_attempts or job.max_attempts}"


class Attempts:
    """Runs attempts and keeps track of the ones in flight."""

    def __init__(self, config: Config, pool: WorkerPool, joblog: JobLog, owner: str) -> None:
        self.config = config
        self.pool = pool
        self.log = joblog
        self.owner = owner
        self.running: dict[int, RunningAttempt] = {}
        self._given_back: dict[int, int] = {}
        """Per job, how many times in a row its worker died before taking the attempt up."""
        self._watcher: asyncio.Task[None] | None = None
        self.progress_listeners: list[Callable[[RunningAttempt], None]] = []
        """Called with a running attempt whenever it reports progress."""

    def start_watching_locks(self) -> None:
        self._watcher = asyncio.create_task(self._watch_locks())

    async def stop_watching_locks(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            await asyncio.gather(self._watcher, return_exceptions=True)

    @contextlib.asynccontextmanager
    async def worker(self) -> AsyncIterator[WorkerProcess]:
        """A worker from the pool for one attempt; back to the pool (or replaced) after."""
        worker = await self.pool.acquire()
        try:
            yield worker
        finally:
            self.pool.release(worker, reusable=worker.alive)

    def cancel(self, job_id: int, reason: str) -> bool:
        """Stop a running attempt (its process group is killed); False if none runs."""
        running = self.running.get(job_id)
        if running is None:
            return False
        self._stop(running, Outcome.CANCELLED, reason)
        return True

    def interrupt(self, job_id: int, reason: str) -> bool:
        """Stop a running attempt through no fault of its job (its node lost its lease): it
        ends as interrupted, and the job is queued again with the attempt given back."""
        running = self.running.get(job_id)
        if running is None:
            return False
        self._stop(running, Outcome.INTERRUPTED, reason)
        return True

    async def interrupt_all(self) -> None:
        """Shutdown: kill every running attempt; they end as interrupted."""
        for running in list(self.running.values()):
            self._stop(running, Outcome.INTERRUPTED, "the daemon is shutting down")
        await asyncio.gather(
            *(r.stopping for r in self.running.values() if r.stopping), return_exceptions=True
        )

    async def run(self, worker: WorkerProcess, job: JobInfo, number: int) -> AttemptResult:
        """Run attempt `number` of `job` in `worker` (from `worker()`)."""
        ended: asyncio.Future[AttemptResult] = asyncio.get_running_loop().create_future()

        def on_end(result: AttemptResult) -> None:
            if not ended.done():
                ended.set_result(result)

        self.begin(worker, job, number, on_end)
        return await ended

    def begin(
        self,
        worker: WorkerProcess,
        job: JobInfo,
        number: int,
        on_end: Callable[[AttemptResult], None],
    ) -> RunningAttempt:
        """Hand attempt `number` of `job` to `worker` now, its deadline running; `on_end`
        gets its result, however it ends. Callbacks rather than a coroutine: the daemon
        records an attempt and hands the worker its next job in the callback that reads
        the worker's report, with no task to wake in between."""
        # Plain strings: this runs for every attempt, and pathlib costs more than the rest.
        lock_path = f"{self.config.locks_dir}/{locks.lock_name(job.class_name, job.method, job.id)}"
        running = RunningAttempt(job, number, worker, lock_path, started_at=time.time())
        self.log.info(
            job.label,
            f"{job_tag(job, number)} started in worker {worker.pid} "
            f"(params: {describe_params(job.params)})",
        )

        def ended(outcome: AttemptDone | WorkerDied) -> None:
            if running.deadline is not None:
                running.deadline.cancel()
            self.running.pop(job.id, None)
            if isinstance(outcome, WorkerDied):
                on_end(self._died(running, outcome))
            else:
                self._given_back.pop(job.id, None)
                on_end(self._done_result(running, outcome))

        request = self._request(job, number, lock_path)
        frame = worker.encode(request)
        loop = asyncio.get_running_loop()
        refusal = self._unsendable(len(frame) - HEADER_BYTES, job)
        if refusal is not None:
            # Handed over, the worker would die reading it and the job would loop: it ends
            # here, as a failed attempt (reported from the loop, as a worker's would be).
            loop.call_soon(on_end, refusal)
            return running
        self.running[job.id] = running
        running.deadline = loop.call_later(job.timeout, self._on_deadline, running)
        try:
            worker.hand_over(
                request,
                running.lock_made,
                ended,
                lambda update: self._progressed(running, update),
                frame=frame,
            )
        except BaseException:
            running.deadline.cancel()
            self.running.pop(job.id, None)
            raise
        return running

    def _progressed(self, running: RunningAttempt, update: Progress) -> None:
        """Keep the attempt's latest progress. The worker runs job code: its update is
        checked again, and a malformed one dropped."""
        if update.attempt != running.number or self.running.get(running.job.id) is not running:
            return
        try:
            running.progress = clean_fraction(update.fraction)
            running.progress_message = clean_message(update.message)
        except (TypeError, ValueError):
            return
        for listener in self.progress_listeners:
            listener(running)

    def _died(self, running: RunningAttempt, died: WorkerDied) -> AttemptResult:
        # The worker could not clean up after itself: it was killed.
        locks.release(running.lock_path)
        output_dir = self.config.job_output_dir
        killed = died.returncode == -signal.SIGKILL  # no tail: it was in the worker's memory
        limit = self.config.limits_of(running.job.class_name).output_bytes
        target = output_dir / f"{running.job.id}.log"
        capture.salvage(
            output_dir,
            running.worker.pid,
            target,
            tail_lost_after=capture.head_size(limit) if killed else None,
        )
        result = self._stopped_result(running, died)
        if running.output_offset is not None:
            # Rare (a kill), so read here: whether the worker moved its output into the
            # job's file as it unwound or `salvage` just did, it ends the file.
            result.printed = capture.tail_of(target, running.output_offset)
        return result

    def _request(self, job: JobInfo, number: int, lock_path: str) -> RunAttempt:
        limits = self.config.limits_of(job.class_name)
        return RunAttempt(
            job_id=job.id,
            attempt=number,
            class_name=job.class_name,
            method=job.method,
            params=job.params,
            output_path=f"{self.config.job_output_dir}/{job.id}.log",
            lock_path=lock_path,
            owner=self.owner,
            memory_limit=limits.memory_bytes,
            max_output_bytes=limits.output_bytes,
            max_open_files=limits.open_files,
            max_result_bytes=limits.result_bytes,
            trace=job.trace,
        )

    def _unsendable(self, size: int, job: JobInfo) -> AttemptResult | None:
        """A failed attempt if its request (`size` bytes) is over what a worker reads in
        one message: a job stored before `max_params_bytes` was checked, or a chain link
        whose previous result with its own params is too large."""
        if size <= MAX_FRAME_BYTES:
            return None
        chained = job.chain_position is not None and job.chain_position > 1
        origin = " (with the previous link's result as the first)" if chained else ""
        error = ErrorInfo(
            type=PARAMS_TOO_LARGE,
            message=(
                f"the params{origin} make a message of {size} bytes to the worker, "
                f"over the {MAX_FRAME_BYTES} bytes ({format_size(MAX_FRAME_BYTES)}) "
                "a message carries"
            ),
            hierarchy=[PARAMS_TOO_LARGE],
        )
        now = time.time()
        return AttemptResult(
            Outcome.FAILED, now, now, None, error=error, no_retry="params too large"
        )

    def _on_deadline(self, running: RunningAttempt) -> None:
        self._stop(running, Outcome.TIMED_OUT, None)

    def _stop(self, running: RunningAttempt, why: Outcome, reason: str | None) -> None:
        if running.stopping is not None:
            return
        running.stop_reason = why
        running.cancel_reason = reason
        running.stopping = asyncio.create_task(self.pool.stop_worker(running.worker))

    def _stopped_result(self, running: RunningAttempt, died: WorkerDied) -> AttemptResult:
        now = time.time()
        outcome = running.stop_reason or Outcome.CRASHED
        job_id = running.job.id
        given_back = self._given_back.pop(job_id, 0)
        if outcome is Outcome.CRASHED and died.memory_limit is not None:
            over = limits.memory_exceeded(died.memory_limit, f"{died}, by the OOM killer")
            return AttemptResult(
                Outcome.FAILED, running.started_at, now, running.worker.pid, error=over
            )
        if outcome is Outcome.CRASHED and not running.has_lock:
            # The worker died before it took the attempt up (killed from outside while it
            # was idle): the job never ran, so the attempt is given back, not counted. But
            # not forever: if that keeps happening, the attempt itself kills its worker.
            given_back += 1
            if given_back < MAX_GIVE_BACKS:
                self._given_back[job_id] = given_back
                return AttemptResult(
                    Outcome.INTERRUPTED,
                    running.started_at,
                    now,
                    running.worker.pid,
                    cancel_reason=f"{died} before the attempt began",
                )
            detail = f"{died} before the attempt began, {given_back} times in a row"
            return AttemptResult(
                Outcome.CRASHED,
                running.started_at,
                now,
                running.worker.pid,
                error=ErrorInfo(type="WorkerCrashed", message=detail, hierarchy=["WorkerCrashed"]),
            )
        if outcome is Outcome.TIMED_OUT:
            error = ErrorInfo(
                type=TIMEOUT_ERROR.type,
                message=f"timed out after {running.job.timeout:g}s",
                hierarchy=TIMEOUT_ERROR.hierarchy,
            )
        elif outcome is Outcome.CRASHED:
            error = ErrorInfo(type="WorkerCrashed", message=str(died), hierarchy=["WorkerCrashed"])
        else:
            error = None
        return AttemptResult(
            outcome,
            running.started_at,
            now,
            running.worker.pid,
            error=error,
            cancel_reason=running.cancel_reason,
        )

    def _done_result(self, running: RunningAttempt, done: AttemptDone) -> AttemptResult:
        now = time.time()
        directive = None
        if done.directive is not None:
            directive = Directive(retry=done.directive == "retry", delay=done.retry_delay)
        return AttemptResult(
            Outcome.FAILED if done.error else Outcome.SUCCEEDED,
            running.started_at,
            now,
            running.worker.pid,
            result=done.result,
            error=done.error,
            directive=directive,
            note=done.note,
            printed=None
            if done.output_tail is None
            else capture.Printed(done.output_tail, done.output_bytes),
        )

    async def _watch_locks(self) -> None:
        while True:
            await asyncio.sleep(LOCK_WATCH_SECONDS)
            for running in list(self.running.values()):
                if not running.has_lock or running.stopping is not None:
                    continue
                present = os.path.exists(running.lock_path)
                running.lock_missing = 0 if present else running.lock_missing + 1
                if running.lock_missing >= 2:
                    self._stop(running, Outcome.CANCELLED, LOCK_REMOVED)


def log_outcome(
    joblog: JobLog, job: JobInfo, number: int, result: AttemptResult, decision: Decision | None
) -> None:
    """The log line(s) for how an attempt ended and what happens next."""
    tag = job_tag(job, number, decision.max_attempts if decision else None)
    if result.note:
        joblog.warning(job.label, f"{tag}: {result.note}")
    if result.outcome is Outcome.SUCCEEDED:
        joblog.success(job.label, f"{tag} succeeded in {result.duration:.3f}s")
        return
    if result.outcome is Outcome.CANCELLED:
        joblog.warning(job.label, f"{tag} cancelled ({result.cancel_reason or 'by request'})")
        return
    if result.outcome is Outcome.INTERRUPTED and decision is None:
        joblog.warning(job.label, f"{tag} interrupted ({result.cancel_reason}); queued again")
        return
    what = {
        Outcome.TIMED_OUT: "timed out",
        Outcome.CRASHED: "crashed",
        Outcome.INTERRUPTED: "interrupted",
    }.get(result.outcome, "failed")
    detail = result.error.summary() if result.error else result.outcome.value
    next_step = f"; {decision.describe()}" if decision else ""
    joblog.error(job.label, f"{tag} {what}: {detail}{next_step}")
