"""Opening the daemon's listening socket safely, and making sure only one daemon runs.

A Unix socket is created with mode 0600 (umask set around `bind`, so it is never briefly
open to others) in a directory made 0700. An exclusive `flock` on `<socket>.lock` proves
that no live daemon owns the socket, so a stale socket file can be replaced without
stealing a live one; a second daemon is refused.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import socket
import stat
from pathlib import Path
from typing import Final

from bgjobs.errors import BgjobsError

BACKLOG: Final = 1024
UNIX_PATH_MAX: Final = 107


class AlreadyRunning(BgjobsError):
    pass


class InstanceLock:
    """An exclusive flock held for the daemon's lifetime; the file names the holder's pid."""

    def __init__(self, path: Path, what: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self._fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(self._fd)
            raise AlreadyRunning(
                f"another bgjobd (pid {holder}) already uses {what}; not starting a second"
            ) from None
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)

    def release(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._fd)


def private_directory(path: Path) -> None:
    """Create the socket's directory 0700; tighten it when we own it and it is looser."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = path.stat()
    if info.st_uid == os.getuid() and stat.S_IMODE(info.st_mode) & 0o077:
        path.chmod(0o700)


def bind_unix(path: Path) -> socket.socket:
    if len(os.fsencode(path)) > UNIX_PATH_MAX:
        raise BgjobsError(f"socket path is too long for a Unix socket: {path}")
    private_directory(path.parent)
    if path.exists() or path.is_symlink():
        if _answers(path):
            raise AlreadyRunning(f"a daemon already listens on {path}")
        path.unlink()  # stale: its daemon is gone (we hold the instance lock)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)
    try:
        sock.bind(str(path))
    finally:
        os.umask(old_umask)
    os.chmod(path, 0o600)
    sock.listen(BACKLOG)
    sock.setblocking(False)
    return sock


def _answers(path: Path) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(str(path))
    except OSError:
        return False
    finally:
        probe.close()
    return True


def parse_address(listen: str, key: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise BgjobsError(f"{key}: {listen!r} is not HOST:PORT")
    return host.strip("[]") or "127.0.0.1", int(port)


def bind_tcp(listen: str) -> socket.socket:
    host, port = parse_address(listen, "daemon.listen")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise AlreadyRunning(f"cannot listen on {listen}: {exc.strerror}") from None
    sock.listen(BACKLOG)
    sock.setblocking(False)
    return sock


def ensure_token(path: Path) -> str:
    """The TCP transport's secret: read from a 0600 file, made on first start."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(32) + "\n")
    if stat.S_IMODE(path.stat().st_mode) & 0o077:
        raise BgjobsError(f"{path}: token file must not be readable by others (chmod 600)")
    return path.read_text().strip()
