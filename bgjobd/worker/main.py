"""The worker process's main loop.

Started in its own session by the daemon, or forked by the template process
(`bgjobd.worker.template`), and in a cgroup of its own where the host allows,
it reads `Setup` and then `RunAttempt` messages from one pipe and answers on another. While
an attempt runs, file descriptors 1 and 2 point at the job's output file, so the output of
any process the job starts is captured too.

Everything an attempt starts ends with it. The worker is a child subreaper, so processes
that leave its process group or session stay its descendants; when an attempt ends
(returned, raised, or SIGTERM) they are killed and reaped. The two pipes never reach job
code's children: close-on-exec, and closed in any child forked. If the daemon dies, the
command pipe hangs up and the worker kills its cgroup, or every descendant and its process
group: a job never runs on unsupervised.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import threading
import types
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Final

import msgspec

from bgjobd import cgroups, containment, donefiles, limits, locks
from bgjobd.capture import Output
from bgjobd.worker import execute, progress
from bgjobd.worker.messages import (
    AttemptDone,
    FromWorker,
    Ready,
    RunAttempt,
    Setup,
    Started,
    ToWorker,
)
from bgjobs.model import ErrorInfo
from bgjobs.protocol import FrameEncoder, FrameReader

_TERMINATED_EXIT: Final = 128 + signal.SIGTERM


class Terminated(BaseException):
    """SIGTERM arrived: unwind the job (its `finally` blocks run) and exit."""


class CommandPipe:
    """The daemon's messages, read on the main thread: a message wakes it directly.

    A thread only watches for the pipe's hang-up (poll with an empty event mask reports
    nothing else, so pending data never wakes it): if the daemon goes while a job runs,
    nobody would record or stop the job, so the job and all it started are killed."""

    def __init__(self, fd: int) -> None:
        import msgspec

        self._fd = fd
        self._decoder: msgspec.msgpack.Decoder[ToWorker] = msgspec.msgpack.Decoder(ToWorker)
        self._reader = FrameReader()
        self._pending: list[bytes] = []
        self.busy = False
        threading.Thread(target=self._watch, name="command-pipe", daemon=True).start()

    def _watch(self) -> None:
        hangup = select.poll()
        hangup.register(self._fd, 0)
        while not hangup.poll():
            pass
        if self.busy:
            if not cgroups.kill_own_leaf():
                containment.kill_descendants()
            os.killpg(os.getpgrp(), signal.SIGKILL)

    def next(self) -> ToWorker | None:
        """The next message; None at end-of-file."""
        while not self._pending:
            chunk = os.read(self._fd, 65536)
            if not chunk:
                return None
            self._pending.extend(self._reader.feed(chunk))
        return self._decoder.decode(self._pending.pop(0))


def _on_sigterm(signum: int, frame: types.FrameType | None) -> None:
    raise Terminated


def _keep_from_children(*fds: int) -> None:
    """The pipes to the daemon are the worker's alone: a process the job starts must not
    hold them (the daemon would wait on it), nor write to them."""
    for fd in fds:
        os.set_inheritable(fd, False)

    def close_in_child() -> None:
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)

    os.register_at_fork(after_in_child=close_in_child)


def main(argv: list[str]) -> int:
    command_fd, result_fd = (int(arg) for arg in argv[:2])
    _keep_from_children(command_fd, result_fd)
    containment.become_subreaper()
    signal.signal(signal.SIGTERM, _on_sigterm)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    execute.tolerant_streams()
    encoder = FrameEncoder()
    commands = CommandPipe(command_fd)
    output = Output()
    output.release()
    outcomes = donefiles.Outcomes(os.getpid())

    def send(message: FromWorker) -> None:
        os.write(result_fd, encoder.encode(message))

    try:
        setup = commands.next()
        if not isinstance(setup, Setup):
            return 0
        if sys.path[:1] != [setup.base_dir]:  # a forked worker's template has put it there
            sys.path.insert(0, setup.base_dir)
        _start_tracing(setup)
        try:
            package = execute.import_jobs(setup)
        except Exception as exc:  # noqa: BLE001  # reported; each attempt then fails with it
            send(Ready(pid=os.getpid(), import_error=execute.describe_error(exc)))
            return _serve_broken(commands, send, exc)
        send(Ready(pid=os.getpid()))
        while isinstance(request := commands.next(), RunAttempt):
            commands.busy = True
            try:
                with limits.applied(request.memory_limit, request.max_open_files):
                    done = _attempt(request, setup, package, output, send, outcomes=outcomes)
            finally:
                containment.end_descendants()
                commands.busy = False
            send(limits.name_limit_errors(done, request))
    except Terminated:
        containment.end_descendants()
        output.release()
        return _TERMINATED_EXIT
    finally:
        output.close()
    return 0


def _attempt(
    request: RunAttempt,
    setup: Setup,
    package: ModuleType,
    output: Output,
    send: Callable[[FromWorker], None],
    *,
    outcomes: donefiles.Outcomes,
) -> AttemptDone:
    """One attempt between its lock file's creation and removal (done here, in the worker,
    so the daemon's event loop never waits on the disk for it)."""
    lock = Path(request.lock_path)
    info = locks.make_info(
        request.job_id,
        request.class_name,
        request.method,
        pid=os.getpid(),
        attempt=request.attempt,
        owner=request.owner,
    )
    try:
        locks.acquire(lock, info)
    except locks.LockHeld as exc:
        error = ErrorInfo(type="LockHeld", message=str(exc), hierarchy=["LockHeld"])
        return AttemptDone(
            job_id=request.job_id, attempt=request.attempt, duration=0.0, error=error
        )
    send(Started(job_id=request.job_id, output_offset=_size_of(request.output_path)))
    output.capture(request.output_path, request.max_output_bytes)
    try:
        with progress.reporting(request, send):
            done = _run(setup, package, request)
        outcomes.keep(request.lock_path, done)  # before the lock goes: a crash loses no run
    finally:
        printed = output.release()
        locks.release(lock)
    if printed is None:
        return done
    return msgspec.structs.replace(done, output_tail=printed.tail, output_bytes=printed.size)


def _size_of(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def _start_tracing(setup: Setup) -> None:
    if setup.tracing:  # only then is OpenTelemetry imported
        from bgjobd.worker import tracing

        tracing.start(setup)


def _run(setup: Setup, package: ModuleType, request: RunAttempt) -> AttemptDone:
    """The job's call, inside the attempt's span when tracing is on."""
    if not setup.tracing:
        return execute.run(setup, package, request)
    from bgjobd.worker import tracing

    return tracing.run_in_span(request, lambda: execute.run(setup, package, request))


def _serve_broken(commands: CommandPipe, send: Callable[[FromWorker], None], exc: Exception) -> int:
    """The jobs package does not import: every attempt fails with that error."""
    error = execute.describe_error(exc)
    while isinstance(request := commands.next(), RunAttempt):
        send(AttemptDone(job_id=request.job_id, attempt=request.attempt, duration=0.0, error=error))
    return 0
