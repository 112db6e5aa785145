"""`run_job.py`: run one job (or chain) now, in the foreground, with no daemon.

    python run_job.py CLASS METHOD ["p1,p2"] [DELAY] [--json-params JSON] [--then C:M[:p]]

The original's grammar, with the daemon's registry, attempts in a worker process, retries,
timeouts, lock files and logs. The job is recorded in the store, so it shows in listings.
Exit codes: 0 success, 1 the job failed, 2 usage or configuration error, 3 refused.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import os
import signal
import socket
import sys
import time

import msgspec

from bgjobd import filemodes, locks, outcomes, submission
from bgjobd.attempts import Attempts
from bgjobd.joblog import NO_JOB, JobLog, describe_params
from bgjobd.pool import WorkerPool
from bgjobd.store.base import KeyTaken, NewJob, UniqueTaken
from bgjobd.store.sqlite import SQLiteStore
from bgjobs.config import Config, load_config
from bgjobs.errors import BgjobsError, ExitCode, RefusedError, UsageError
from bgjobs.model import ChainLink, JobInfo, JobSpec, JobState
from bgjobs.params import parse_delay, parse_json_params, split_params

PROG = "run_job.py"
WAIT_POLL_SECONDS = 0.1
"""How often a runner looks again: for room under its class's concurrency limit (held by
other runners or nodes), and for a cancel sent through another process."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Run one allow-listed job now, without a daemon.")
    parser.add_argument("class_name", metavar="CLASS")
    parser.add_argument("method", metavar="METHOD")
    parser.add_argument(
        "params",
        metavar="PARAMS",
        nargs="?",
        default="",
        help='comma-separated string parameters, e.g. "a,b"',
    )
    parser.add_argument(
        "delay", metavar="DELAY", nargs="?", default=None, help="seconds to wait before running"
    )
    parser.add_argument("--config", metavar="PATH")
    parser.add_argument(
        "--json-params", metavar="JSON", help="typed parameters as a JSON array (instead of PARAMS)"
    )
    parser.add_argument(
        "--then",
        metavar="CLASS:METHOD[:p1,p2]",
        action="append",
        default=[],
        help="run this job next, with the previous result first (repeatable)",
    )
    parser.add_argument("--spec-json", help=argparse.SUPPRESS)  # from run_background_job()
    return parser


def parse_link(text: str) -> ChainLink:
    class_name, sep, rest = text.partition(":")
    method, _, params = rest.partition(":")
    if not sep or not class_name or not method:
        raise UsageError(f"--then {text!r}: expected CLASS:METHOD or CLASS:METHOD:p1,p2")
    return ChainLink(class_name, method, split_params(params))


def parse_spec(args: argparse.Namespace) -> JobSpec:
    if args.spec_json is not None:
        try:
            return msgspec.json.decode(args.spec_json, type=JobSpec)
        except msgspec.DecodeError as exc:
            raise UsageError(f"--spec-json: {exc}") from None
    if args.json_params is not None and args.params:
        raise UsageError("give parameters either as PARAMS or with --json-params, not both")
    params = (
        parse_json_params(args.json_params)
        if args.json_params is not None
        else split_params(args.params)
    )
    return JobSpec(
        class_name=args.class_name,
        method=args.method,
        params=params,
        delay=parse_delay(args.delay),
        then=[parse_link(text) for text in args.then],
    )


def owner_name() -> str:
    return f"{PROG}@{socket.gethostname()}:{os.getpid()}"


class OneShot:
    def __init__(self, config: Config, joblog: JobLog, owner: str | None = None) -> None:
        self.config = config
        self.log = joblog
        self.owner = owner or owner_name()
        self.store = SQLiteStore(config.database_path, fsync=config.settings.daemon.fsync)
        self.pool = WorkerPool(config, size=1, on_error=lambda text: joblog.error(NO_JOB, text))
        self.attempts = Attempts(config, self.pool, joblog, self.owner)

    async def run(self, spec: JobSpec) -> int:
        now = time.time()
        rows = [
            dataclasses.replace(row, oneshot=True)
            for row in submission.build(self.config, spec, now, self.owner)
        ]
        try:
            ids = self.store.add(rows)
        except KeyTaken as exc:
            return self._already_stored(rows[0], exc)
        except UniqueTaken as exc:
            return self._unique_live(rows[0], exc)
        self.store.commit()
        first = rows[0]
        label = f"{first.class_name}::{first.method}"
        if first.state is JobState.SCHEDULED:
            self.log.info(
                label,
                f"job {ids[0]} delayed {spec.delay:g}s by {PROG} "
                f"(params: {describe_params(first.params)})",
            )
        else:
            self.log.info(
                label, f"job {ids[0]} run by {PROG} (params: {describe_params(first.params)})"
            )
        await self.pool.start()
        self.attempts.start_watching_locks()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        try:
            job_id: int | None = ids[0]
            final: JobInfo | None = None
            while job_id is not None:
                final = await self._run_job(job_id, stop)
                job_id = None
                if final.state is JobState.SUCCEEDED and final.chain_id is not None:
                    following = [
                        j for j in self.store.chain(final.chain_id) if j.state is JobState.QUEUED
                    ]
                    job_id = following[0].id if following else None
        finally:
            await self.attempts.stop_watching_locks()
            await self.pool.close()
            self.store.close()
        assert final is not None
        report(final)
        return ExitCode.OK if final.state is JobState.SUCCEEDED else ExitCode.FAILED

    def _already_stored(self, first: NewJob, taken: KeyTaken) -> int:
        """The submit's idempotency key is in the store: the daemon (or another runner)
        took the job, e.g. it received the submit whose reply the client gave up on. It
        runs there, once; not here."""
        self.store.rollback()
        self.store.close()
        self.log.info(
            f"{first.class_name}::{first.method}",
            f"not run by {PROG}: job {taken.job_ids[0]} was submitted with the same "
            f"idempotency key and runs there",
        )
        return ExitCode.OK

    def _unique_live(self, first: NewJob, taken: UniqueTaken) -> int:
        """The class is `unique` and an equal job waits or runs (in a daemon, or another
        runner): that job is the one; none is made here."""
        self.store.rollback()
        self.store.close()
        self.log.info(
            f"{first.class_name}::{first.method}",
            f"not run by {PROG}: the equal unique job {taken.job_id} is still waiting or running",
        )
        print(f"{PROG}: not run: the equal unique job {taken.job_id} is still waiting or running")
        return ExitCode.OK

    async def _run_job(self, job_id: int, stop: asyncio.Event) -> JobInfo:
        while True:
            job = self.store.get(job_id)
            assert job is not None
            if job.state.is_final:
                return job
            if job.state is JobState.SCHEDULED:
                await self._sleep_until(job.run_at.timestamp(), stop)
                if stop.is_set():
                    return self._abandon(job)
                self.store.promote([job_id])
                self.store.commit()
            if not await self._attempt(job_id, stop):
                # Its class is at its concurrency limit (counted over every process).
                await self._sleep_until(time.time() + WAIT_POLL_SECONDS, stop)
                if stop.is_set():
                    return self._abandon(self.store.get(job_id) or job)

    def _claim(self, job_id: int, worker_pid: int) -> JobInfo | None:
        job = self.store.get(job_id)
        limit = None if job is None else self.config.concurrency_limits.get(job.class_name)
        return self.store.claim(job_id, self.owner, worker_pid, time.time(), limit=limit)

    async def _attempt(self, job_id: int, stop: asyncio.Event) -> bool:
        """One attempt of the job, recorded; False if it could not be claimed."""
        async with self.attempts.worker() as worker:
            job = self._claim(job_id, worker.pid)
            self.store.commit()
            if job is None:
                return False
            watcher = asyncio.create_task(self._cancel_on(stop, job_id))
            try:
                result = await self.attempts.run(worker, job, job.attempts)
            finally:
                watcher.cancel()
        outcomes.record(self.config, self.store, self.log, job, result)
        self.store.commit()
        return True

    async def _cancel_on(self, stop: asyncio.Event, job_id: int) -> None:
        """Stop the attempt when this runner is interrupted, or when another process (a
        daemon's `cancel`) asks through the store."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), WAIT_POLL_SECONDS)
            for requested, reason in self.store.cancel_requests(self.owner):
                if requested == job_id:
                    self.attempts.cancel(job_id, reason)
                    return
        self.attempts.cancel(job_id, f"{PROG} was interrupted")

    def _abandon(self, job: JobInfo) -> JobInfo:
        cancelled = self.store.cancel_waiting(job.id, f"{PROG} was interrupted", time.time())
        outcomes.end_chain(self.store, self.log, cancelled or job)
        self.store.commit()
        self.log.warning(job.label, f"job {job.id} cancelled: {PROG} was interrupted")
        return self.store.get(job.id) or job

    @staticmethod
    async def _sleep_until(when: float, stop: asyncio.Event) -> None:
        delay = when - time.time()
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)


def report(job: JobInfo) -> None:
    """Say how the job (the chain's last link reached) ended: the result on stdout, a
    failure on stderr, so that a terminal shows what happened and scripts can tell."""
    where = f" (link {job.chain_position}/{job.chain_length})" if job.chain_position else ""
    tries = f"{job.attempts} attempt{'s' if job.attempts != 1 else ''}"
    if job.state is JobState.SUCCEEDED:
        last = job.history[-1] if job.history else None
        took = f" in {last.duration:.3f}s" if last and last.duration is not None else ""
        print(f"job {job.id} ({job.label}){where} succeeded{took}: {_preview(job.result)}")
        return
    detail = job.error.summary() if job.error else (job.reason or "")
    print(
        f"{PROG}: job {job.id} ({job.label}){where} {job.state.value} after {tries}: {detail}",
        file=sys.stderr,
    )


def _preview(value: object, limit: int = 500) -> str:
    try:
        text = msgspec.json.encode(value).decode()
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        config = load_config(args.config)
        os.umask(filemodes.modes_of(config).umask)  # before any file: see bgjobd.filemodes
        spec = parse_spec(args)
    except BgjobsError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return exc.exit_code
    for directory in (config.logs_dir, config.job_output_dir, config.locks_dir):
        directory.mkdir(parents=True, exist_ok=True)
    joblog = JobLog(config.logs_dir, config.settings.logging.format)
    for link in [ChainLink(spec.class_name, spec.method, spec.params), *spec.then]:
        try:
            submission.check_allowed(config, link.class_name, link.method)
        except RefusedError as exc:
            joblog.security(
                f"{link.class_name}::{link.method}",
                f"refused by {PROG}: {exc} (params: {describe_params(link.params)})",
            )
            print(f"{PROG}: refused: {exc}", file=sys.stderr)
            return ExitCode.REFUSED
    locks.remove_stale(config.locks_dir)
    from bgjobd.cli import run_loop

    try:
        return run_loop(OneShot(config, joblog).run(spec))
    except BgjobsError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
