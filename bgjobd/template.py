"""The daemon's handle on the template process that forks warm workers
(`bgjobd.worker.template`), and on the exit of a worker it forked.

A forked worker is the daemon's child (the template forks it through an intermediate that
exits, and the daemon is a child subreaper), but not one asyncio started: its exit is seen
on a pidfd, and the daemon reaps it itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
from typing import Final

import msgspec

from bgjobd.worker.messages import (
    TEMPLATE_MESSAGE_BYTES,
    Forked,
    FromTemplate,
    Setup,
    TemplateReady,
)

CLOSE_WAIT: Final = 5.0
"""How long a template that was told to go may take before it is killed."""


class TemplateGone(Exception):
    """The template process exited, answered nonsense, or could not fork: the worker
    starts as a new interpreter, and the next one from another template."""


def can_fork() -> bool:
    """Forking workers needs pidfds (Linux 5.3) and SCM_RIGHTS; the caller also needs to
    be a child subreaper, for the workers to become its children."""
    if not hasattr(os, "pidfd_open") or not hasattr(socket, "send_fds"):
        return False
    try:
        os.close(os.pidfd_open(os.getpid()))
    except OSError:
        return False
    return True


class Template:
    def __init__(self, setup: Setup, env: dict[str, str], cwd: str, *, generation: int) -> None:
        self._setup = setup
        self._env = env
        self._cwd = cwd
        self.generation = generation
        """Which configuration it imported the jobs package with (see `WorkerPool`)."""
        self._process: asyncio.subprocess.Process | None = None
        self._socket: socket.socket | None = None
        self._decoder = msgspec.msgpack.Decoder(FromTemplate)
        self._one_at_a_time = asyncio.Lock()
        self.pid = 0
        self.ready: TemplateReady | None = None

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.returncode is None

    async def start(self, timeout: float) -> TemplateReady:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self._process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bgjobd.worker.template",
                str(theirs.fileno()),
                pass_fds=(theirs.fileno(),),
                start_new_session=True,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
                env=self._env,
                cwd=self._cwd,
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self.pid = self._process.pid
        ours.setblocking(False)
        self._socket = ours
        ours.send(msgspec.msgpack.encode(self._setup))
        ready = await asyncio.wait_for(self._receive(), timeout)
        if not isinstance(ready, TemplateReady):
            raise TemplateGone("the template process answered its setup with nonsense")
        self.ready = ready
        return ready

    async def fork(self, command_read: int, result_write: int) -> int:
        """A new worker holding these two pipe ends; its pid."""
        async with self._one_at_a_time:
            if self._socket is None or not self.alive:
                raise TemplateGone("the template process is gone")
            try:
                socket.send_fds(self._socket, [b"f"], [command_read, result_write])
            except OSError as exc:
                raise TemplateGone(f"the template process is gone ({exc})") from exc
            forked = await self._receive()
        if not isinstance(forked, Forked):
            raise TemplateGone("the template process answered a fork with nonsense")
        if forked.pid <= 0:
            raise TemplateGone(forked.error or "the template process could not fork")
        return forked.pid

    async def _receive(self) -> FromTemplate:
        assert self._socket is not None
        loop = asyncio.get_running_loop()
        try:
            data = await loop.sock_recv(self._socket, TEMPLATE_MESSAGE_BYTES)
        except OSError as exc:
            raise TemplateGone(f"the template process is gone ({exc})") from exc
        if not data:
            raise TemplateGone("the template process exited")
        try:
            return self._decoder.decode(data)
        except msgspec.DecodeError as exc:
            raise TemplateGone("the template process answered with nonsense") from exc

    async def exited(self) -> int:
        """Wait for the template process to exit; its returncode."""
        assert self._process is not None
        return await self._process.wait()

    async def close(self, wait: float = CLOSE_WAIT) -> None:
        """Let it exit (end-of-file on its socket) once a fork in progress is answered;
        kill it if it has not exited after `wait` seconds."""
        async with self._one_at_a_time:
            if self._socket is not None:
                self._socket.close()
                self._socket = None
        if self._process is None:
            return
        try:
            await asyncio.wait_for(self._process.wait(), wait)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self._process.kill()
            await self._process.wait()


async def wait_forked(pid: int) -> int | None:
    """Wait for a forked worker (the daemon's child) to exit, reap it, and return its
    returncode as asyncio gives one (negative: the signal); None if it was not ours to
    reap."""
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:  # gone, and reaped by someone else
        return None
    loop = asyncio.get_running_loop()
    exited = loop.create_future()

    def readable() -> None:
        if not exited.done():
            exited.set_result(None)

    loop.add_reader(pidfd, readable)
    try:
        await exited
    finally:
        loop.remove_reader(pidfd)
        os.close(pidfd)
    try:
        _, status = os.waitpid(pid, 0)  # it has exited: this does not block
    except ChildProcessError:
        return None
    return os.waitstatus_to_exitcode(status)
