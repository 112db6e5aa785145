"""The template process: imports the worker's runtime and the jobs package once, then forks
warm workers on the daemon's request, which share those pages (copy on write).

The daemon starts it as a fresh interpreter (so it holds none of the daemon's sockets, store
or event loop) and talks to it over one SOCK_SEQPACKET socket: first a `Setup`, answered
`TemplateReady`; then one request per worker, carrying the worker's two pipe ends
(SCM_RIGHTS), answered `Forked`. End-of-file on that socket (the daemon closed it, or died)
ends the template; the workers it forked live on.

Each worker is forked twice over: the template forks an intermediate that forks the worker
and exits at once, so the worker is reparented to the daemon (a child subreaper, see
`bgjobd.orphans`). It is then the daemon's child like a spawned one: the daemon reaps it and
learns how it ended, whatever becomes of the template. In the worker: its own session,
stdio on /dev/null, none of the template's descriptors but the pipes, and then
`bgjobd.worker.main.main`, exactly as a spawned worker runs it. Python re-seeds `random`
in every forked child by itself (`os.register_at_fork`).
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import gc
import os
import socket
import struct
import sys
import threading
from typing import Final, NoReturn

import msgspec

from bgjobd.filemodes import keep_others_out
from bgjobd.worker import execute
from bgjobd.worker import main as runtime
from bgjobd.worker.messages import (
    TEMPLATE_MESSAGE_BYTES,
    Forked,
    FromTemplate,
    Setup,
    TemplateReady,
)

_PID: Final = struct.Struct("=i")
NAME: Final = "bgjobd-template"
"""The template's process name (`ps -o comm`, top): its command line is its workers' too."""
_PR_SET_NAME: Final = 15
_PIPES_FROM: Final = 32
"""A forked worker's pipes get numbers from here, as a spawned worker's keep the daemon's
(high) numbers: the low ones stay the job's."""


def _set_name(name: str) -> None:
    """Name this process (/proc/PID/comm, 15 bytes at most); nothing where unsupported."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(_PR_SET_NAME, name.encode()[:15], 0, 0, 0)


def main(argv: list[str]) -> int:
    keep_others_out()
    _set_name(NAME)
    control = socket.socket(fileno=int(argv[0]))
    os.set_inheritable(control.fileno(), False)
    encoder = msgspec.msgpack.Encoder()
    setup = msgspec.msgpack.decode(control.recv(TEMPLATE_MESSAGE_BYTES), type=Setup)
    if sys.path[:1] != [setup.base_dir]:
        sys.path.insert(0, setup.base_dir)
    imported = _import_jobs(setup)
    # Objects that exist now are shared with every worker: left out of the cyclic
    # collector, its passes do not write to (and so copy) the pages that hold them.
    gc.collect()
    gc.freeze()
    ready: FromTemplate = TemplateReady(
        pid=os.getpid(), imported=imported, threads=threading.active_count()
    )
    control.send(encoder.encode(ready))
    while True:
        request, fds, _, _ = socket.recv_fds(control, 16, 2)
        if not request:
            return 0
        try:
            if len(fds) != 2:
                reply: FromTemplate = Forked(pid=0, error=f"{len(fds)} descriptors, not 2")
            else:
                reply = _fork_worker(control, fds[0], fds[1])
        finally:
            for fd in fds:
                os.close(fd)
        control.send(encoder.encode(reply))


def _import_jobs(setup: Setup) -> bool:
    """Import the jobs package here, once, for all the workers. Not with tracing on: the
    worker sets tracing up first, so that spans made while importing are traced. A failed
    import is left to each worker to make again and report."""
    if setup.tracing:
        return False
    try:
        execute.import_jobs(setup)
    except Exception:  # noqa: BLE001  # the worker imports it again and reports the error
        return False
    return True


def _fork_worker(control: socket.socket, command_fd: int, result_fd: int) -> Forked:
    pid_read, pid_write = os.pipe()
    try:
        intermediate = os.fork()
        if intermediate == 0:
            _intermediate(control, pid_read, pid_write, command_fd, result_fd)
        os.close(pid_write)
        pid_write = -1
        answer = os.read(pid_read, _PID.size)
        os.waitpid(intermediate, 0)
    except OSError as exc:
        return Forked(pid=0, error=f"cannot fork a worker: {exc}")
    finally:
        os.close(pid_read)
        if pid_write >= 0:
            os.close(pid_write)
    if len(answer) != _PID.size or (pid := _PID.unpack(answer)[0]) <= 0:
        return Forked(pid=0, error="cannot fork a worker (the second fork failed)")
    return Forked(pid=pid)


def _intermediate(
    control: socket.socket, pid_read: int, pid_write: int, command_fd: int, result_fd: int
) -> NoReturn:
    """Fork the worker, say its pid, exit: the worker goes to the daemon."""
    try:
        # Named before the fork: the worker becomes the daemon's child the moment this
        # process exits, and is never one under the template's name.
        _set_name(os.path.basename(sys.executable))  # a spawned worker's name
        os.close(pid_read)
        worker = os.fork()
        if worker == 0:
            os.close(pid_write)
            _worker(control, command_fd, result_fd)
        os.write(pid_write, _PID.pack(worker))
    except BaseException:  # noqa: BLE001  # the template hears of it: no pid written
        os._exit(1)
    os._exit(0)


def _worker(control: socket.socket, command_fd: int, result_fd: int) -> NoReturn:
    code = 1
    try:
        control.close()
        os.setsid()  # its own session and process group, as a spawned worker's
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        os.close(devnull)
        command_fd, result_fd = _moved_up(command_fd), _moved_up(result_fd)
        # The argv of a spawned worker (`python -m bgjobd.worker COMMAND RESULT`).
        main_path = os.path.join(os.path.dirname(runtime.__file__), "__main__.py")
        sys.argv = [main_path, str(command_fd), str(result_fd)]
        code = runtime.main(sys.argv[1:])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _moved_up(fd: int) -> int:
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, _PIPES_FROM)
    os.close(fd)
    return moved


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
