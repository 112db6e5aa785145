"""The daemon's handle on one worker process: start it, send it attempts, kill it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Final

import msgspec

from bgjobd.cgroups import Cgroup, CgroupTree
from bgjobd.donefiles import FILE_BYTES
from bgjobd.template import Template, wait_forked
from bgjobd.worker.messages import (
    AttemptDone,
    FromWorker,
    Progress,
    Ready,
    RunAttempt,
    Setup,
    Started,
)
from bgjobs.protocol import FrameEncoder, FrameError, FrameReader

STARTUP_TIMEOUT = 30.0
CGROUP_EMPTY_WAIT: Final = 5.0
"""How long a dead worker's cgroup may take to empty before it is left for later."""


class WorkerDied(Exception):
    """The worker process exited: it was killed, or crashed."""

    def __init__(self, returncode: int | None, *, memory_limit: int | None = None) -> None:
        self.returncode = returncode
        self.memory_limit = memory_limit
        """Set when the cgroup's OOM killer took it: the attempt went over this limit."""
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
    wait in a deque for `get`. None marks the worker's exit (`end`), not the pipe's
    end-of-file, which a process that kept the pipe open could hold off forever."""

    def __init__(self, on_broken: Callable[[], None]) -> None:
        self._messages: deque[FromWorker | None] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._reader = FrameReader()
        self._decoder = msgspec.msgpack.Decoder(FromWorker)
        self._on_broken = on_broken
        self._ended = False
        self.listener: Callable[[FromWorker | None], None] | None = None
        self.received = 0
        """Bytes read so far: what the worker's outcome files have grown by, roughly."""

    def data_received(self, data: bytes) -> None:
        self.received += len(data)
        try:
            bodies = self._reader.feed(data)
            messages = [self._decoder.decode(body) for body in bodies]
        except (FrameError, msgspec.DecodeError):
            self._on_broken()
            return
        for message in messages:
            self._put(message)

    def end(self) -> None:
        """The worker exited: the listener, or the next `get`, learns it (once)."""
        if not self._ended:
            self._ended = True
            self._put(None)

    def _put(self, message: FromWorker | None) -> None:
        if self.listener is not None:
            self.listener(message)
            return
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
    """One worker. Its end is its process's exit, seen at once (whatever still holds its
    pipes): then its cgroup is killed and its pipes closed, and an attempt in progress
    ends with WorkerDied."""

    def __init__(
        self,
        setup: Setup,
        env: dict[str, str],
        cwd: str,
        *,
        cgroups: CgroupTree | None = None,
        on_exit: Callable[[WorkerProcess], None] | None = None,
        template: Template | None = None,
    ) -> None:
        self._setup = setup
        self._env = env
        self._cwd = cwd
        self._template = template
        """Forks this worker; None: it is a new interpreter."""
        self.forked = False
        self._encoder = FrameEncoder()
        self._started = False
        self._commands: asyncio.WriteTransport | None = None
        self._result_transport: asyncio.BaseTransport | None = None
        self._results = _ResultPipe(self._broken)
        self._cgroups = cgroups
        self.cgroup: Cgroup | None = None
        self._on_exit = on_exit
        self._exited: asyncio.Future[int | None] | None = None
        self.returncode: int | None = None
        self.pid = 0
        self.started_at = time.time()
        self.attempts_run = 0
        self.busy_with: int | None = None
        self.import_error: str | None = None
        self.generation = 0
        """Which configuration it was started with; a reload retires older workers."""
        self._dead = False
        self._background: set[asyncio.Task[None]] = set()
        self.replaced = False
        """The pool has started another worker in its place."""
        self.on_idle_death: Callable[[WorkerProcess], None] | None = None
        self._memory_limit: int | None = None
        self._oom_kills = 0
        self._tidied_at = 0

    def untidied(self) -> bool:
        """The worker may have started another outcome file since `tidied` was last called
        (see `bgjobd.donefiles`)."""
        return self._results.received - self._tidied_at >= FILE_BYTES

    def tidied(self) -> None:
        self._tidied_at = self._results.received

    @property
    def alive(self) -> bool:
        return not self._dead and self._started and self.returncode is None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        command_read, command_write = os.pipe()
        result_read, result_write = os.pipe()
        try:
            if self._template is not None:
                self.pid = await self._template.fork(command_read, result_write)
                self.forked = True
                exit_code: Coroutine[None, None, int | None] = wait_forked(self.pid)
            else:
                process = await asyncio.create_subprocess_exec(
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
                self.pid = process.pid
                exit_code = process.wait()
        except BaseException:
            for fd in (command_write, result_read):
                os.close(fd)
            raise
        finally:
            os.close(command_read)
            os.close(result_write)
        self._started = True
        # Before the worker reads its Setup, so no job code runs outside the cgroup.
        if self._cgroups is not None:
            self.cgroup = self._cgroups.place(self.pid)
        self._exited = loop.create_future()
        self._in_background(self._watch_exit(exit_code))
        self._commands, _ = await loop.connect_write_pipe(
            asyncio.Protocol, os.fdopen(command_write, "wb", buffering=0)
        )
        self._result_transport, _ = await loop.connect_read_pipe(
            lambda: self._results, os.fdopen(result_read, "rb", 0)
        )
        self._send(self._setup)
        ready = await asyncio.wait_for(self._receive(), STARTUP_TIMEOUT)
        if not isinstance(ready, Ready):
            raise WorkerDied(self.returncode)
        if ready.import_error is not None:
            self.import_error = ready.import_error.summary()

    async def _watch_exit(self, exit_code: Coroutine[None, None, int | None]) -> None:
        code = await exit_code
        self.returncode = code
        self._dead = True
        if self.cgroup is not None:
            self.cgroup.kill()  # what the job left behind, in whatever session
        self._close_pipes()
        if self._exited is not None and not self._exited.done():
            self._exited.set_result(code)
        if self._on_exit is not None:
            self._on_exit(self)
        if self.cgroup is not None:
            self._in_background(self._remove_cgroup(self.cgroup))
        listening = self._results.listener is not None
        self._results.end()
        if not listening and self.on_idle_death is not None:
            self.on_idle_death(self)

    async def _remove_cgroup(self, cgroup: Cgroup) -> None:
        deadline = time.monotonic() + CGROUP_EMPTY_WAIT
        while not cgroup.remove() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)

    def _in_background(self, work: Coroutine[None, None, None]) -> None:
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _broken(self) -> None:
        """The result pipe carried garbage: the worker is unusable."""
        if self.returncode is None:
            self._dead = True
            self._kill_everything()

    def _send(self, message: Setup | RunAttempt) -> None:
        """Write to the worker; nothing once it has exited (its end is reported anyway)."""
        self._write(self._encoder.encode(message))

    def _write(self, frame: bytes) -> None:
        assert self._commands is not None
        if not self._commands.is_closing():
            self._commands.write(frame)

    async def _receive(self) -> FromWorker:
        message = await self._results.get()
        if message is None:
            self._dead = True
            raise WorkerDied(self.returncode)
        return message

    def hand_over(
        self,
        request: RunAttempt,
        on_started: Callable[[int], None],
        on_end: Callable[[AttemptDone | WorkerDied], None],
        on_progress: Callable[[Progress], None] | None = None,
        *,
        frame: bytes | None = None,
    ) -> None:
        """Send an attempt to the worker, which starts it at once. `on_started` is called
        once the worker holds the lock file and calls the job (with the size of the job's
        output file before the attempt); `on_end` once with how it
        ended: the worker's report, or WorkerDied as soon as the process exits (killed or
        crashed) first; `on_progress` with each progress update. All are called from the
        event loop's callbacks."""
        self.busy_with = request.job_id
        self.attempts_run += 1
        limited = self._limit_memory(request)
        if limited is not request or frame is None:
            frame = self.encode(limited)

        def listen(message: FromWorker | None) -> None:
            if message is None:
                self._results.listener = None
                self.busy_with = None
                on_end(WorkerDied(self.returncode, memory_limit=self._went_over()))
            elif isinstance(message, Started) and message.job_id == request.job_id:
                on_started(message.output_offset)
            elif isinstance(message, AttemptDone) and message.job_id == request.job_id:
                self._results.listener = None
                self.busy_with = None
                self._lift_memory_limit()
                on_end(message)
            elif (
                isinstance(message, Progress)
                and message.job_id == request.job_id
                and on_progress is not None
            ):
                on_progress(message)

        self._write(frame)
        self._results.listen(listen)

    def encode(self, request: RunAttempt) -> bytes:
        """The frame that carries `request` to the worker (see `hand_over`'s `frame`)."""
        return self._encoder.encode(request)

    def _limit_memory(self, request: RunAttempt) -> RunAttempt:
        """With the memory controller, the cgroup limits the attempt's memory, and the
        worker sets no RLIMIT_AS of its own."""
        if self.cgroup is None or not self.cgroup.memory or request.memory_limit is None:
            return request
        self.cgroup.set_memory_max(request.memory_limit)
        self._memory_limit = request.memory_limit
        self._oom_kills = self.cgroup.oom_kills()
        return msgspec.structs.replace(request, memory_limit=None)

    def _lift_memory_limit(self) -> None:
        if self.cgroup is not None and self._memory_limit is not None:
            self.cgroup.set_memory_max(None)
            self._memory_limit = None

    def _went_over(self) -> int | None:
        if self.cgroup is None or self._memory_limit is None:
            return None
        return self._memory_limit if self.cgroup.oom_kills() > self._oom_kills else None

    async def kill(self, grace: float) -> None:
        """SIGTERM the worker's process group (the job's `finally` blocks run, and the
        worker kills what the job started), then after `grace` seconds, or as soon as the
        worker has exited, SIGKILL the group and the worker's cgroup."""
        if not self._started or self._exited is None:
            return
        self._dead = True
        if self.returncode is None:
            _signal_group(self.pid, signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._exited), grace)
        self._kill_everything()
        await self._exited
        self._close_pipes()  # those connected after an early death, too

    def _kill_everything(self) -> None:
        _signal_group(self.pid, signal.SIGKILL)
        if self.cgroup is not None:
            self.cgroup.kill()

    async def close(self) -> None:
        """Let an idle worker exit on its own (end-of-file on its command pipe)."""
        self._dead = True
        if self._commands is not None:
            self._commands.close()
        if self._exited is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._exited), 5.0)
            except TimeoutError:
                await self.kill(0)
        self._close_pipes()

    def _close_pipes(self) -> None:
        for transport in (self._commands, self._result_transport):
            if transport is not None and not transport.is_closing():
                transport.close()


def _signal_group(pgid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)
