"""The daemon's handle on one worker process: start it, send it attempts, kill it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Callable

import msgspec

from bgjobd.worker.messages import AttemptDone, FromWorker, Ready, RunAttempt, Setup, Started
from bgjobs.protocol import FrameEncoder, FrameError, FrameReader

STARTUP_TIMEOUT = 30.0


class WorkerDied(Exception):
    """The worker's pipe closed: it exited, was killed, or crashed."""

    def __init__(self, returncode: int | None) -> None:
        self.returncode = returncode
        super().__init__(describe_exit(returncode))


def describe_exit(returncode: int | None) -> str:
    if returncode is None:
        return "worker process vanished"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"worker process killed by {name}"
    return f"worker process exited with code {returncode}"


class _ResultPipe(asyncio.Protocol):
    """The worker's result pipe. During an attempt its messages go straight to the
    attempt's listener, inside `data_received`: the daemon hands the worker its next job
    in the same callback, with no task to wake. Otherwise (the start-up handshake) they
    wait in a deque for `get`. None marks end-of-file."""

    def __init__(self) -> None:
        self._messages: deque[FromWorker | None] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._reader = FrameReader()
        self._decoder = msgspec.msgpack.Decoder(FromWorker)
        self.listener: Callable[[FromWorker | None], None] | None = None
        self.on_idle_eof: Callable[[], None] | None = None
        """Called when the pipe closes with no attempt listening: the worker died idle."""

    def data_received(self, data: bytes) -> None:
        try:
            bodies = self._reader.feed(data)
            messages = [self._decoder.decode(body) for body in bodies]
        except (FrameError, msgspec.DecodeError):
            self._put(None)
            return
        for message in messages:
            self._put(message)

    def connection_lost(self, exc: Exception | None) -> None:
        self._put(None)

    def _put(self, message: FromWorker | None) -> None:
        if self.listener is not None:
            self.listener(message)
            return
        if message is None and self.on_idle_eof is not None:
            self.on_idle_eof()
        self._messages.append(message)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def listen(self, listener: Callable[[FromWorker | None], None]) -> None:
        """Send every message to `listener` from now on, those waiting first."""
        self.listener = listener
        while self._messages and self.listener is listener:
            listener(self._messages.popleft())

    async def get(self) -> FromWorker | None:
        while not self._messages:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._messages.popleft()


class WorkerProcess:
    def __init__(self, setup: Setup, env: dict[str, str], cwd: str) -> None:
        self._setup = setup
        self._env = env
        self._cwd = cwd
        self._encoder = FrameEncoder()
        self._process: asyncio.subprocess.Process | None = None
        self._commands: asyncio.WriteTransport | None = None
        self._results = _ResultPipe()
        self.pid = 0
        self.started_at = time.time()
        self.attempts_run = 0
        self.busy_with: int | None = None
        self.import_error: str | None = None
        self.generation = 0
        """Which configuration it was started with; a reload retires older workers."""
        self._dead = False
        self._reaping: set[asyncio.Task[None]] = set()
        self.replaced = False
        """The pool has started another worker in its place."""
        self.on_idle_death: Callable[[WorkerProcess], None] | None = None
        self._results.on_idle_eof = self._died_idle

    def _died_idle(self) -> None:
        self._dead = True
        if self.on_idle_death is not None:
            self.on_idle_death(self)

    @property
    def alive(self) -> bool:
        return not self._dead and self._process is not None and self._process.returncode is None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        command_read, command_write = os.pipe()
        result_read, result_write = os.pipe()
        try:
            self._process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bgjobd.worker",
                str(command_read),
                str(result_write),
                pass_fds=(command_read, result_write),
                start_new_session=True,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
                env=self._env,
                cwd=self._cwd,
            )
        finally:
            os.close(command_read)
            os.close(result_write)
        self.pid = self._process.pid
        self._commands, _ = await loop.connect_write_pipe(
            asyncio.Protocol, os.fdopen(command_write, "wb", buffering=0)
        )
        await loop.connect_read_pipe(lambda: self._results, os.fdopen(result_read, "rb", 0))
        self._send(self._setup)
        ready = await asyncio.wait_for(self._receive(), STARTUP_TIMEOUT)
        if not isinstance(ready, Ready):
            raise WorkerDied(None)
        if ready.import_error is not None:
            self.import_error = ready.import_error.summary()

    def _send(self, message: Setup | RunAttempt) -> None:
        assert self._commands is not None
        self._commands.write(self._encoder.encode(message))

    async def _receive(self) -> FromWorker:
        message = await self._results.get()
        if message is None:
            self._dead = True
            raise WorkerDied(await self._exit_code())
        return message

    async def _exit_code(self) -> int | None:
        assert self._process is not None
        with contextlib.suppress(TimeoutError):
            return await asyncio.wait_for(self._process.wait(), 5.0)
        return None

    def hand_over(
        self,
        request: RunAttempt,
        on_started: Callable[[], None],
        on_end: Callable[[AttemptDone | WorkerDied], None],
    ) -> None:
        """Send an attempt to the worker, which starts it at once. `on_started` is called
        once the worker holds the lock file and calls the job; `on_end` once with how it
        ended: the worker's report, or WorkerDied if the process died (or was killed)
        first. Both are called from the pipe's callback (a death: from a task that reaps
        the process for its exit code)."""
        self.busy_with = request.job_id
        self.attempts_run += 1

        def listen(message: FromWorker | None) -> None:
            if message is None:
                self._dead = True
                self._results.listener = None
                self._reap(on_end)
            elif isinstance(message, Started) and message.job_id == request.job_id:
                on_started()
            elif isinstance(message, AttemptDone) and message.job_id == request.job_id:
                self._results.listener = None
                self.busy_with = None
                on_end(message)

        self._send(request)
        self._results.listen(listen)

    def _reap(self, on_end: Callable[[AttemptDone | WorkerDied], None]) -> None:
        async def reap() -> None:
            code = await self._exit_code()
            self.busy_with = None
            on_end(WorkerDied(code))

        task = asyncio.create_task(reap())
        self._reaping.add(task)
        task.add_done_callback(self._reaping.discard)

    async def kill(self, grace: float) -> None:
        """SIGTERM the whole process group, SIGKILL it after `grace` seconds (or at once
        once the worker itself has gone), so that processes the job started die too."""
        if self._process is None:
            return
        self._dead = True
        _signal_group(self.pid, signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._process.wait(), grace)
        _signal_group(self.pid, signal.SIGKILL)
        await self._process.wait()
        self._close_pipes()

    async def close(self) -> None:
        """Let an idle worker exit on its own (end-of-file on its command pipe)."""
        self._dead = True
        if self._commands is not None:
            self._commands.close()
        if self._process is not None:
            try:
                await asyncio.wait_for(self._process.wait(), 5.0)
            except TimeoutError:
                await self.kill(0)
        self._close_pipes()

    def _close_pipes(self) -> None:
        if self._commands is not None and not self._commands.is_closing():
            self._commands.close()


def _signal_group(pgid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)
