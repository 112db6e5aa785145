"""Opening the daemon's listening socket safely, and making sure only one daemon runs.

A Unix socket is created with mode 0600 (umask set around `bind`, so it is never briefly
open to others); when other users are allowed (`allowed_uids`, `allowed_gids`) it is made
0666 and the peer-credential check alone tells them apart. Its directory's mode is bgjobd's
business only if bgjobd created it (0700, or 0711 when others are allowed; a marker file
inside remembers that across starts): a directory it did not make, such as a sticky /tmp,
is never chmod-ed. An exclusive `flock` on `<socket>.lock` proves that no live daemon owns
the socket, so a stale socket file can be replaced without stealing a live one; a second
daemon is refused.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import socket
import stat
from collections.abc import Callable
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
        self.path = path
        # The directory may be shared (a socket in /tmp): never follow a planted symlink.
        flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
        try:
            self._fd = os.open(path, flags, 0o600)
        except OSError as exc:
            raise BgjobsError(f"cannot open the lock file {path}: {exc.strerror}") from None
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


MADE_BY_BGJOBD: Final = ".made-by-bgjobd"
"""A file in a directory bgjobd created for its socket: its mode is then ours to manage."""


def socket_directory(path: Path, *, open_to_others: bool, warn: Callable[[str], None]) -> None:
    """Create the socket's directory (then it is bgjobd's: 0700, or 0711 so that allowed
    users can reach the socket); leave the mode of a directory bgjobd did not make alone."""
    wanted = 0o711 if open_to_others else 0o700
    # Parents made along the way must let allowed users through as well.
    old_umask = os.umask(0o066 if open_to_others else 0o077)
    try:
        path.mkdir(mode=0o700, parents=True)
    except FileExistsError:
        pass
    else:
        (path / MADE_BY_BGJOBD).touch(mode=0o600)
    finally:
        os.umask(old_umask)
    info = path.stat()
    ours = info.st_uid == os.geteuid() and _ours(path / MADE_BY_BGJOBD)
    if ours and stat.S_IMODE(info.st_mode) != wanted:
        path.chmod(wanted)
    if open_to_others:
        _say_if_unreachable(path, warn)


def _say_if_unreachable(path: Path, warn: Callable[[str], None]) -> None:
    for directory in (path, *path.parents):
        if not directory.stat().st_mode & stat.S_IXOTH:
            warn(
                f"other users may use the socket but cannot reach it: {directory} is not "
                "searchable by them (bgjobd leaves the mode of a directory it did not create "
                "alone)"
            )
            return


def _ours(marker: Path) -> bool:
    try:
        info = marker.lstat()
    except FileNotFoundError:
        return False
    return stat.S_ISREG(info.st_mode) and info.st_uid == os.geteuid()


def bind_unix(path: Path, *, open_to_others: bool = False) -> socket.socket:
    """Listen on a Unix socket at `path` (its directory prepared by `socket_directory`)."""
    if len(os.fsencode(path)) > UNIX_PATH_MAX:
        raise BgjobsError(f"socket path is too long for a Unix socket: {path}")
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
    # Others allowed: anyone may connect, and the peer check refuses all but them.
    os.chmod(path, 0o666 if open_to_others and peer_credentials_checked() else 0o600)
    sock.listen(BACKLOG)
    sock.setblocking(False)
    return sock


def peer_credentials_checked() -> bool:
    """Whether the daemon learns who connected (without it, only the mode keeps others out)."""
    return hasattr(socket, "SO_PEERCRED")


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
    if not path.exists():
        _publish_new_token(path)
    if stat.S_IMODE(path.stat().st_mode) & 0o077:
        raise BgjobsError(f"{path}: token file must not be readable by others (chmod 600)")
    return path.read_text().strip()


def _publish_new_token(path: Path) -> None:
    """Write a new token beside `path` and link it into place: a client (or another
    daemon) never reads a half-written token, and of two daemons starting at once the
    first link wins and both use it."""
    draft = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(32) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(draft, path)
    finally:
        draft.unlink()
