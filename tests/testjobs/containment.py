"""Jobs that try to escape or exhaust their attempt: an escaped grandchild, memory, files."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


class Escape:
    """Double-forks a grandchild that calls setsid() and sleeps `seconds`, keeping every
    descriptor it inherited; writes the grandchild's pid to `pid_file` (complete before the
    job goes on). Then the job sleeps `seconds` itself (`hang`), the same ignoring SIGTERM
    (`stubborn`: only SIGKILL stops its worker), or returns at once (`return`)."""

    def handle(self, pid_file: str, seconds: float | str = 60, then: str = "hang") -> int:
        if then == "stubborn":
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        child = os.fork()
        if child == 0:
            os.setsid()
            grandchild = os.fork()
            if grandchild == 0:
                time.sleep(float(seconds))
                os._exit(0)
            scratch = Path(f"{pid_file}.tmp")
            scratch.write_text(str(grandchild))
            scratch.rename(pid_file)
            os._exit(0)
        os.waitpid(child, 0)
        if then in ("hang", "stubborn"):
            time.sleep(float(seconds))
        return int(Path(pid_file).read_text())


class Allocate:
    """Holds `megabytes` of memory for a moment."""

    def handle(self, megabytes: int | str) -> int:
        block = bytearray(int(megabytes) * 1024 * 1024)
        return len(block) // (1024 * 1024)


class OpenFiles:
    """Opens `count` files at once (in `directory`), then closes them."""

    def handle(self, directory: str, count: int | str) -> int:
        with contextlib.ExitStack() as handles:
            for number in range(int(count)):
                handles.enter_context(Path(directory, f"file-{number}").open("w"))
            return int(count)


class ManyFiles(OpenFiles):
    """OpenFiles under another class name, so it can have other limits."""


class Descriptors:
    """Which of the worker's two pipes to the daemon (its argv) are open: in the worker,
    in a child it forks, and in a program a child execs with `close_fds=False`."""

    def handle(self) -> dict[str, list[int]]:
        pipes = [int(fd) for fd in sys.argv[1:3]]
        read_end, write_end = os.pipe()
        child = os.fork()
        if child == 0:
            os.write(write_end, json.dumps([fd for fd in pipes if _is_open(fd)]).encode())
            os._exit(0)
        os.close(write_end)
        with os.fdopen(read_end, "rb") as reader:
            forked = json.loads(reader.read())
        os.waitpid(child, 0)
        listing = subprocess.run(
            ["ls", "/proc/self/fd"], capture_output=True, text=True, close_fds=False, check=True
        ).stdout.split()
        return {
            "worker": [fd for fd in pipes if _is_open(fd)],
            "forked": forked,
            "execed": [fd for fd in pipes if str(fd) in listing],
        }


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True
