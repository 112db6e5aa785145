"""Acting as another user of the host (`nobody`) from a forked child of the test process.

A new interpreter would not do: the virtualenv under /root may not be readable by nobody.
The child drops its groups and ids, runs one function, and sends back the text it returns.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Final

import pytest

from bgjobs.protocol import PROTOCOL_VERSION, Error, FrameEncoder, Hello, decode_reply

NOBODY: Final = 65534
CHILD_TIMEOUT: Final = 30.0

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="switching uid needs root")


def as_nobody(action: Callable[[], str]) -> str:
    """Run `action` in a child process as uid/gid 65534; its returned text (or the
    exception it raised, as `raised: ...`)."""
    read_end, write_end = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads: we exec nothing
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 0
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            try:
                text = action()
            except Exception as exc:  # noqa: BLE001  # reported to the parent as text
                text = f"raised: {exc!r}"
            os.write(write_end, text.encode())
        except BaseException:  # noqa: BLE001
            code = 1
        finally:
            os._exit(code)
    os.close(write_end)
    chunks: list[bytes] = []
    deadline = time.monotonic() + CHILD_TIMEOUT
    try:
        while True:
            ready, _, _ = select.select([read_end], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                os.kill(pid, 9)
                raise AssertionError("the child acting as nobody did not finish")
            chunk = os.read(read_end, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(read_end)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the child acting as nobody failed"
    return b"".join(chunks).decode()


def readable_files(root: Path) -> Callable[[], str]:
    """An action listing every file under `root` that the user can open for reading."""

    def action() -> str:
        found: list[str] = []
        for directory, _dirs, files in os.walk(root):
            for name in files:
                path = os.path.join(directory, name)
                with contextlib.suppress(OSError):
                    os.close(os.open(path, os.O_RDONLY | os.O_NONBLOCK))
                    found.append(path)
        return "\n".join(found)

    return action


def hello_over(socket_path: Path) -> Callable[[], str]:
    """An action that says Hello on the daemon's socket and names the reply:
    `Welcome`, `Error:<code>`, or `connect: <errno name>`."""

    def action() -> str:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(10)
            try:
                sock.connect(str(socket_path))
            except OSError as exc:
                return f"connect: {type(exc).__name__}"
            # A refused peer is answered and closed at once, maybe before Hello is sent;
            # the answer still waits to be read.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                sock.sendall(FrameEncoder().encode(Hello(version=PROTOCOL_VERSION, rid=1)))
            data = b""
            while len(data) < 4 or len(data) < 4 + int.from_bytes(data[:4], "big"):
                chunk = sock.recv(65536)
                if not chunk:
                    return "closed"
                data += chunk
            reply = decode_reply(data[4 : 4 + int.from_bytes(data[:4], "big")])
            return f"Error:{reply.code.value}" if isinstance(reply, Error) else type(reply).__name__

    return action
