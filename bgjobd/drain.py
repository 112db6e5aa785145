"""`python -m bgjobd.drain --config PATH`: run the spooled jobs while no daemon answers.

Started detached by a client that spooled a job and found the spool's drainer lock free;
it holds that lock (flock: released by the kernel however it exits) for as long as it
runs, so at most one drains per storage. Nothing but paths on its command line.

It imports spooled jobs a few at a time into the store as one-shot jobs with their keys
(a key already there is the same job: the daemon's, left alone; or an earlier drainer's,
taken up), and runs them one attempt at a time with the daemon's parts (a worker from the
pool, `Attempts`, retry rules and chains through `bgjobd.outcomes`, logs). A job's spool
file is removed once the job has ended. Every ~0.5 s it pings the daemon; once it
answers, the drainer exits after its current attempt, and the daemon takes the rest over
from the spool (see `bgjobd.spoolimport`). It also exits after `BGJOBS_DRAIN_IDLE_SECONDS`
(default 2) with nothing to do, and on SIGTERM/SIGINT after its current attempt (jobs are
never cancelled by it: what is left stays in the spool). It runs at niceness 10: the
application comes first.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import os
import signal
import sqlite3
import sys
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Final, Literal

from bgjobd import filemodes, handover, outcomes, spool, submission
from bgjobd.attempts import Attempts
from bgjobd.joblog import NO_JOB, JobLog, describe_params
from bgjobd.pool import WorkerPool
from bgjobd.store.base import KeyTaken
from bgjobd.store.offline import StoreRetry
from bgjobd.store.open import open_store
from bgjobs.config import Config, load_config
from bgjobs.errors import BadParams, BgjobsError, RefusedError, TooLarge
from bgjobs.model import JobInfo, JobState

IDLE_ENV: Final = "BGJOBS_DRAIN_IDLE_SECONDS"
DEFAULT_IDLE_SECONDS: Final = 2.0
PING_INTERVAL: Final = 0.5
PING_TIMEOUT: Final = 0.5
IMPORT_BATCH: Final = 4
"""Spooled jobs imported at a time: few, so that a daemon coming back finds most of them
still in the spool, where it imports them as its own at once."""
_NAP: Final = 0.1
NICENESS: Final = 10

Ending = Literal["idle", "daemon", "stopped"]


class Drainer:
    def __init__(
        self, config: Config, joblog: JobLog, daemon_answers: Callable[[], bool], idle: float
    ) -> None:
        self.config = config
        self.log = joblog
        self.owner = handover.owner_name()
        self.store = open_store(config, lambda text: joblog.error(NO_JOB, text))
        self.pool = WorkerPool(
            config,
            size=1,
            on_error=lambda text: joblog.error(NO_JOB, text),
            worker_start="spawn",  # one worker: a template would only cost a process more
        )
        self.attempts = Attempts(config, self.pool, joblog, self.owner)
        self.spool = spool.directory_of(config.storage_dir)
        self.daemon_answers = daemon_answers
        self.idle = idle
        self.tracked: dict[Path, list[int]] = {}
        """Spool files imported, with the ids of their links."""
        self.daemon_back = asyncio.Event()
        self._queue: deque[Path] = deque()
        """Spool files seen by the last scan and not imported yet."""

    def _claim(self, job_id: int, worker_pid: int) -> JobInfo | None:
        return self.store.claim_oneshot(job_id, self.owner, worker_pid, time.time())

    async def _attempt(self, job_id: int) -> bool:
        """One attempt of the job, recorded; False if it could not be claimed (the daemon
        took it over). Not cancelled by SIGTERM (`stop` is checked between attempts): the
        job is the application's, and the rest of the spool waits for the daemon or a
        drainer. A cancel sent through the store stops it."""
        async with self.attempts.worker() as worker:
            job = self._claim(job_id, worker.pid)
            self.store.commit()
            if job is None:
                return False
            watcher = asyncio.create_task(self._obey_cancels(job_id))
            try:
                result = await self.attempts.run(worker, job, job.attempts)
            finally:
                watcher.cancel()
        outcomes.record(self.config, self.store, self.log, job, result)
        self.store.commit()
        return True

    async def _obey_cancels(self, job_id: int) -> None:
        while True:
            await asyncio.sleep(_NAP)
            for requested, reason in self.store.cancel_requests(self.owner):
                if requested == job_id:
                    self.attempts.cancel(job_id, reason)
                    return

    async def drain(self) -> Ending:
        if await asyncio.to_thread(self.daemon_answers):
            self.store.close()
            return "daemon"  # back already (a client gave up on a slow answer)
        await self.pool.start()
        self.attempts.start_watching_locks()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        idle_since = time.monotonic()
        watcher: asyncio.Task[None] | None = None
        try:
            watcher = asyncio.create_task(self._watch_daemon())
            while not stop.is_set():
                if self.daemon_back.is_set():
                    return "daemon"
                if await self._run_next():
                    idle_since = time.monotonic()
                elif self.tracked or self._queue or spool.pending(self.spool):
                    idle_since = time.monotonic()  # a job waits for its time: not idle
                    await self._nap()
                elif time.monotonic() - idle_since >= self.idle:
                    return "idle"
                else:
                    await self._nap()
            return "stopped"
        finally:
            if watcher is not None:
                watcher.cancel()
            await self.attempts.stop_watching_locks()
            await self.pool.close()
            self.store.close()

    async def _run_next(self) -> bool:
        """One attempt of the next due job (imported if need be); False if none is due."""
        job_id = self._next_due()
        if job_id is None:
            self._import_some()
            job_id = self._next_due()
        if job_id is None:
            return False
        try:
            await self._attempt(job_id)
        except (sqlite3.OperationalError, StoreRetry) as exc:
            # The store is busy (a paused daemon may hold its write lock), or its server
            # out of reach: the job stays
            # as it was, or is settled by `_settle_lost` when we look again.
            self.store.rollback()
            self.log.warning(NO_JOB, f"{self.owner}: store busy: {exc}")
            await self._nap()
        return True

    async def _nap(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.daemon_back.wait(), _NAP)

    async def _watch_daemon(self) -> None:
        while not await asyncio.to_thread(self.daemon_answers):
            await asyncio.sleep(PING_INTERVAL)
        self.log.info(NO_JOB, f"{self.owner}: the daemon answers; it takes the spool over")
        self.daemon_back.set()

    # choosing ------------------------------------------------------------------------------

    def _next_due(self) -> int | None:
        """The first tracked job that is due; forgets the ended ones (and their spool
        files) and those the daemon took over."""
        now = time.time()
        for path, ids in list(self.tracked.items()):
            links = [job for job in map(self.store.get, ids) if job is not None]
            live = [job for job in links if not job.state.is_final]
            if not live:
                spool.remove(path)
                del self.tracked[path]
                continue
            if any(not handover.is_drainer(job.owner) for job in live):
                del self.tracked[path]  # the daemon's now; it removes the file
                continue
            self._settle_lost(live)
            for job in live:
                if job.state is JobState.QUEUED or (
                    job.state is JobState.SCHEDULED and job.run_at.timestamp() <= now
                ):
                    return job.id
        return None

    def _settle_lost(self, live: list[JobInfo]) -> None:
        """An attempt of ours whose record failed (the store was busy) is left running
        with no worker at it: recorded as its worker wrote it down, like a dead drainer's."""
        lost = [
            job
            for job in live
            if job.state is JobState.RUNNING
            and job.owner == self.owner
            and not handover.attempt_under_way(self.config, job)
        ]
        if lost and handover.settle_abandoned(self.config, self.store, self.log, lost):
            self.store.commit()
            handover.forget_outcome_files(self.config, lost)

    # importing -----------------------------------------------------------------------------

    def _import_some(self) -> None:
        # One scandir per round through the spool, not per batch: thousands may wait.
        if not self._queue:
            self._queue.extend(
                path for path in spool.pending(self.spool) if path not in self.tracked
            )
        imported = 0
        while self._queue and imported < IMPORT_BATCH:
            path = self._queue.popleft()
            try:
                if self._import(path):
                    imported += 1
            except (sqlite3.OperationalError, StoreRetry) as exc:
                # The store is busy (e.g. a paused daemon holds its write lock), or its
                # server out of reach: later.
                self.store.rollback()
                self.log.warning(NO_JOB, f"{self.owner}: cannot import {path.name} yet: {exc}")
                self._queue.appendleft(path)
                return

    def _import(self, path: Path) -> bool:
        try:
            item = spool.read(path)
        except spool.Unreadable as exc:
            self.log.error(NO_JOB, f"{self.owner}: set aside an unreadable spool file: {exc}")
            spool.reject(path)
            return False
        if item is None:
            return False
        spec = item.spec
        try:
            rows = [
                dataclasses.replace(row, oneshot=True)
                for row in submission.build(self.config, spec, item.spooled_at, self.owner)
            ]
        except (RefusedError, TooLarge, BadParams) as exc:
            # The configuration changed since the client checked it.
            say = self.log.security if isinstance(exc, RefusedError) else self.log.error
            say(
                f"{spec.class_name}::{spec.method}",
                f"spooled job refused by {self.owner}: {exc} "
                f"(params: {describe_params(spec.params)})",
            )
            spool.reject(path)
            return False
        try:
            ids = self.store.add(rows)
        except KeyTaken as taken:
            self.store.rollback()
            return self._take_up(path, taken.job_ids)
        self.store.commit()
        self.log.info(
            f"{spec.class_name}::{spec.method}",
            f"job {ids[0]} taken from the spool by {self.owner} "
            f"(params: {describe_params(spec.params)})",
        )
        self.tracked[path] = ids
        return True

    def _take_up(self, path: Path, ids: list[int]) -> bool:
        """The key is stored already: the daemon's job (left alone: it runs there), or
        one an earlier drainer imported (its attempt, if it died in one, recorded)."""
        links = [job for job in map(self.store.get, ids) if job is not None]
        live = [job for job in links if not job.state.is_final]
        if any(not handover.is_drainer(job.owner) for job in live):
            spool.remove(path)
            return False
        if handover.blocked(self.config, live):
            return False  # a dead drainer's worker is still at it: later
        settled = handover.settle_abandoned(self.config, self.store, self.log, live)
        self.store.commit()
        if settled:
            handover.forget_outcome_files(self.config, live)
        self.tracked[path] = ids
        return True


def pinger(config: Config, socket_path: str | None) -> Callable[[], bool]:
    from bgjobctl.address import Address, address_of
    from bgjobctl.client import Client

    address = Address(unix_path=Path(socket_path)) if socket_path else address_of(config)

    def daemon_answers() -> bool:
        client = Client(address, timeout=PING_TIMEOUT)
        try:
            client.ping()
        except (BgjobsError, OSError):
            return False
        finally:
            client.close()
        return True

    return daemon_answers


def command(config_path: str | None, socket_path: str | None) -> list[str]:
    """The drainer's command line: paths only."""
    args = [sys.executable, "-m", "bgjobd.drain"]
    if config_path:
        args += ["--config", config_path]
    if socket_path:
        args += ["--socket", socket_path]
    return args


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bgjobd.drain")
    parser.add_argument("--config", metavar="PATH")
    parser.add_argument("--socket", metavar="PATH")
    parser.add_argument("--lock-fd", type=int, help="the drainer lock, taken by the spawner")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
        modes = filemodes.modes_of(config)
    except BgjobsError as exc:
        print(f"bgjobd.drain: {exc}", file=sys.stderr)
        return exc.exit_code
    os.umask(modes.umask)
    # Background work while the application is busy without its daemon: its request
    # handlers (which fall back here) come first. Its worker, and so the jobs, inherit it.
    with contextlib.suppress(OSError):
        os.nice(max(0, NICENESS - os.nice(0)))  # once: a re-exec keeps it
    spool_dir = spool.directory_of(config.storage_dir)
    lock = args.lock_fd if args.lock_fd is not None else spool.try_lock(spool_dir, modes.file_mode)
    if lock is None:
        return 0  # another drainer is at work
    for directory in (config.logs_dir, config.job_output_dir, config.locks_dir):
        directory.mkdir(parents=True, exist_ok=True)
    idle = float(os.environ.get(IDLE_ENV, DEFAULT_IDLE_SECONDS))
    drainer = Drainer(config, JobLog(config.logs_dir), pinger(config, args.socket), idle)
    ending = asyncio.run(drainer.drain())
    os.close(lock)
    if ending == "idle" and spool.pending(spool_dir):
        # A client spooled a job after the last look and found the lock still held: it
        # counts on this drainer. Start again (as a fresh process, taking the lock anew).
        os.execv(sys.executable, command(args.config, args.socket))  # noqa: S606  # ourselves
    return 0


if __name__ == "__main__":
    sys.exit(main())
