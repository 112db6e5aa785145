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
from collections.abc import Mapping, Sequence

import msgspec

from bgjobd import filemodes, locks, outcomes, submission
from bgjobd.attempts import Attempts
from bgjobd.engine import Engine
from bgjobd.events import EventHub
from bgjobd.joblog import NO_JOB, JobLog, describe_params
from bgjobd.journal import Journal
from bgjobd.pool import WorkerPool
from bgjobd.store.base import KeyTaken, NewJob, Store, UniqueTaken, claim_each
from bgjobd.store.open import open_store
from bgjobs.config import Config, load_config
from bgjobs.errors import BgjobsError, ExitCode, RefusedError, UsageError
from bgjobs.model import ChainLink, JobInfo, JobSpec, JobState, PauseKind
from bgjobs.params import parse_delay, parse_json_params, split_params
from bgjobs.rates import Rate

PROG = "run_job.py"
WAIT_POLL_SECONDS = 0.1
"""How often a runner looks whether its job or chain has ended (besides hearing of each
attempt's end)."""


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


class OwnJobs:
    """The claims of a one-shot runner (see `bgjobd.dispatch.Claims`): its own jobs only,
    the links of its chain in order. They are stored `oneshot`, which no daemon claims or
    promotes, so a job of `run_job.py` runs in its runner and nowhere else, and ends with
    it (a daemon of the host ends the jobs of a runner that died: bgjobd.recovery). Each is
    claimed by id under its class's limit, counted over every process sharing the store.
    Whatever queue they name: the runner's one worker is theirs."""

    def __init__(self, store: Store, job_ids: Sequence[int]) -> None:
        self._store = store
        self._ids = list(job_ids)

    def jobs(self) -> list[JobInfo]:
        return [job for job in map(self._store.get, self._ids) if job is not None]

    def _in(self, state: JobState) -> list[JobInfo]:
        return [job for job in self.jobs() if job.state is state]

    def _claim_one(
        self,
        owner: str,
        worker_pid: int,
        now: float,
        limits: Mapping[str, int],
        rates: Mapping[str, Rate] | None,
    ) -> JobInfo | None:
        queued = self._in(JobState.QUEUED)
        if not queued:
            return None
        job = queued[0]  # the links in order: one at a time
        return self._store.claim(
            job.id,
            owner,
            worker_pid,
            now,
            limit=limits.get(job.class_name),
            rate=(rates or {}).get(job.class_name),
        )

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
        return claim_each(
            lambda worker_pid: self._claim_one(owner, worker_pid, now, limits, rates),
            worker_pids,
        )

    def next_rate_slot(self, rates: Mapping[str, Rate], now: float) -> float | None:
        queued = self._in(JobState.QUEUED)
        return self._store.next_rate_slot(rates, now, queued[0].id) if queued else None

    def waiting(self, most: int, queue: str) -> int:
        return min(most, len(self._in(JobState.QUEUED)))

    def next_due(self) -> float | None:
        return min((job.run_at.timestamp() for job in self._in(JobState.SCHEDULED)), default=None)

    def promote_due(self, now: float) -> list[int]:
        due = [job.id for job in self._in(JobState.SCHEDULED) if job.run_at.timestamp() <= now]
        return self._store.promote(due) if due else []

    def outcome(self) -> JobInfo | None:
        """The job that ended the run (the first link that did not succeed, or the last
        link), or None while the chain goes on."""
        jobs = self.jobs()
        for job in jobs:
            if not job.state.is_final:
                return None
            if job.state is not JobState.SUCCEEDED:
                return job
        return jobs[-1] if jobs else None


class OneShot:
    """The engine in a burst mode: one worker, claiming only this runner's own jobs
    (`OwnJobs`), until its job or chain has ended. Registry, limits, uniqueness, retry
    rules, chains, locks, logs and cancels (through the store, or by removing the lock
    file) are the daemon's own code."""

    def __init__(self, config: Config, joblog: JobLog, owner: str | None = None) -> None:
        self.config = config
        self.log = joblog
        self.owner = owner or owner_name()
        self.store = open_store(config, lambda message: joblog.error(NO_JOB, message))
        self._stop = asyncio.Event()

    async def run(self, spec: JobSpec) -> int:
        # Before anything is stored or logged: a Ctrl-C from then on cancels the job
        # rather than killing this process between its log line and its worker.
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._stop.set)
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
        self._note_pause(first)
        final = await self._burst(OwnJobs(self.store, ids))
        report(final)
        return ExitCode.OK if final.state is JobState.SUCCEEDED else ExitCode.FAILED

    def _note_pause(self, first: NewJob) -> None:
        """A pause holds back the daemons' claims, not this runner: `run_job.py` is an
        explicit foreground command and runs its job anyway, saying so."""
        pauses = [
            pause
            for pause in self.store.pauses()
            if pause.kind is PauseKind.ALL
            or (pause.kind is PauseKind.CLASS and pause.name == first.class_name)
            or (pause.kind is PauseKind.QUEUE and pause.name == first.queue)
        ]
        if pauses:
            why = f"{pauses[0].label} paused; {PROG} runs it anyway (a foreground run)"
            self.log.warning(f"{first.class_name}::{first.method}", why)
            print(f"{PROG}: {why}", file=sys.stderr)

    async def _burst(self, own: OwnJobs) -> JobInfo:
        """Run the jobs to their end on the engine, with one worker."""
        journal = Journal(self.store, lambda message: self.log.error(NO_JOB, message))
        pool = WorkerPool(
            self.config,
            size=1,
            on_error=lambda text: self.log.error(NO_JOB, text),
            after_commit=journal.after_commit,
            worker_start="spawn",  # one worker: a template would only cost a process more
        )
        attempts = Attempts(self.config, pool, self.log, self.owner)
        engine = Engine(
            config=self.config,
            store=self.store,
            journal=journal,
            attempts=attempts,
            events=EventHub(),
            joblog=self.log,
            owner=self.owner,
            claims=own,
        )
        ended = asyncio.Event()
        engine.attempt_listeners.append(lambda job, result: ended.set())
        stop = self._stop
        loop = asyncio.get_running_loop()

        def interrupt() -> None:
            stop.set()
            ended.set()

        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, interrupt)
        await pool.start()
        attempts.start_watching_locks()
        engine.start()
        try:
            while (final := own.outcome()) is None:
                if stop.is_set():
                    final = await self._interrupted(engine, own, ended)
                    break
                ended.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(ended.wait(), WAIT_POLL_SECONDS)
        finally:
            await engine.drain(0)
            await attempts.stop_watching_locks()
            await pool.close()
            journal.flush()  # the last writes, then what waited for them (the worker's files)
            journal.close()
            self.store.close()
        return final

    async def _interrupted(self, engine: Engine, own: OwnJobs, ended: asyncio.Event) -> JobInfo:
        """SIGTERM or SIGINT: an attempt under way is cancelled (and recorded so), a job
        still waiting is cancelled with the rest of its chain."""
        reason = f"{PROG} was interrupted"
        running = [job for job in own.jobs() if engine.attempts.cancel(job.id, reason)]
        while running and (final := own.outcome()) is None:
            ended.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ended.wait(), WAIT_POLL_SECONDS)
        if running and final is not None:
            return final
        await engine.drain(0)  # no claim from now on
        waiting = next((job for job in own.jobs() if not job.state.is_final), None)
        if waiting is not None:
            cancelled = self.store.cancel_waiting(waiting.id, reason, time.time())
            outcomes.end_chain(self.store, self.log, cancelled or waiting)
            self.store.commit()
            self.log.warning(waiting.label, f"job {waiting.id} cancelled: {reason}")
        final = own.outcome()
        assert final is not None
        return final

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
