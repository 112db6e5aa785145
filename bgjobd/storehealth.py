"""Watching the storage a running daemon depends on: free space, and whether the database
and the storage directory are still the ones it opened.

Free space: below `min_free_space` on the storage's filesystem, submits are refused with
`store_full` (checked with `statvfs` at most every SPACE_CACHE_SECONDS, so a submit costs
no system call). Beside the database lies a reserve file (`bgjobd.reserve`, half of
`min_free_space`, at most 8 MiB); when space runs out it is deleted, so that the daemon's
own writes (claims, attempt outcomes, the WAL growing) still have room while submits are
refused, and it is made again once there is room for it and `min_free_space` besides.

Identity: the database file is compared (st_dev, st_ino) with the one opened before every
commit, and the database, its WAL and the storage directory about every CHECK_SECONDS.
Deleted, replaced or unreadable (by its permissions): the store is lost, `on_lost` is told
once, and the daemon stops acknowledging and exits non-zero. The directories the daemon
writes beside it (logs, job output, lock files) are recreated when missing, with a warning.

On PostgreSQL (`[store] backend = "postgresql"`) there is no database file here: no space,
reserve or identity checks (the server watches its own disk), only the directories of the
storage kept, and the connection's health: while the server cannot be reached (the store
is offline and reconnecting), submits are refused with `store_unavailable`; once the store
finds its tables gone (the schema dropped under the node), the store is lost, as above.
"""

from __future__ import annotations

import asyncio
import errno
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Final, Protocol

from bgjobd.store.open import open_postgres
from bgjobd.store.sqlite import SQLiteStore
from bgjobs.config import Config
from bgjobs.errors import BgjobsError, ExitCode, StoreFull, StoreUnavailable
from bgjobs.protocol import ErrorCode
from bgjobs.sizes import format_size

if TYPE_CHECKING:
    from bgjobd.store.postgres import PostgresStore

SPACE_CACHE_SECONDS: Final = 0.1
CHECK_SECONDS: Final = 1.0
RESERVE_NAME: Final = "bgjobd.reserve"
RESERVE_MAX: Final = 8 * 1024 * 1024
LOST_MARKER: Final = "bgjobd.store-lost"
"""Left in the storage directory when the store was lost under a running daemon: the next
start refuses until an operator removes it, so that a restart (systemd's Restart=) does not
quietly begin again on an empty database."""

_Identity = tuple[int, int]


class Connection(Protocol):
    """A store on a server (PostgresStore): why it cannot be reached now, if so, and why
    its tables are gone for good (dropped under the node), if so."""

    offline: str | None
    gone: str | None


class StoreDamaged(BgjobsError):
    """The database fails its integrity check, or is not a database: bgjobd will not start
    on it."""

    exit_code = ExitCode.FAILED


def mark_lost(config: Config, reason: str) -> None:
    """Best effort: the storage may be gone or full."""
    marker = config.storage_dir / LOST_MARKER
    try:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())} UTC: {reason}\n")
    except OSError:
        return


def refuse_if_lost(config: Config) -> None:
    marker = config.storage_dir / LOST_MARKER
    try:
        reason = marker.read_text().strip()
    except FileNotFoundError:
        return
    except OSError as exc:
        reason = f"(unreadable: {exc})"
    if config.settings.store.backend == "postgresql":
        what = f"the PostgreSQL schema {config.settings.store.schema!r}"
    else:
        what = str(config.database_path)
    raise StoreDamaged(
        f"the store was lost while bgjobd ran: {reason}. Jobs it held may be gone. Restore "
        f"{what} from a backup if there is one, or accept the loss; then delete {marker} "
        "and start bgjobd again."
    )


def open_store(config: Config, on_error: Callable[[str], None]) -> SQLiteStore | PostgresStore:
    """Open the daemon's store: the configured backend. SQLite's file is checked for its
    integrity (`PRAGMA quick_check`): a damaged database is refused with what to do,
    before anything is written into it."""
    if config.settings.store.backend == "postgresql":
        from bgjobd.store.postgres import SUBMIT_LOCK_WAIT

        store = open_postgres(config, on_error)  # the server checks its own pages
        store.submit_lock_wait = SUBMIT_LOCK_WAIT  # the loop never waits for an application
        return store
    return _open_sqlite(config, on_error)


def _open_sqlite(config: Config, on_error: Callable[[str], None]) -> SQLiteStore:
    path = config.database_path
    advice = (
        f"Stop here and keep a copy of {path.parent} as it is. Then either restore "
        f"{path.name} from a backup, or salvage what is readable with "
        f"`sqlite3 {path} .recover | sqlite3 {path.name}.recovered`, move the damaged "
        f"{path.name}, {path.name}-wal and {path.name}-shm aside and put the recovered "
        "file in its place; then start bgjobd again."
    )
    try:
        store = SQLiteStore(
            path,
            fsync=config.settings.daemon.fsync,
            background_checkpoints=True,
            on_error=on_error,
        )
    except sqlite3.DatabaseError as exc:
        raise StoreDamaged(f"the database {path} cannot be opened: {exc}. {advice}") from exc
    try:
        problems = store.quick_check()
    except sqlite3.DatabaseError as exc:
        problems = [str(exc)]
    if problems:
        store.close()
        shown = "; ".join(problems[:5]) + ("; …" if len(problems) > 5 else "")
        raise StoreDamaged(f"the database {path} failed its integrity check: {shown}. {advice}")
    return store


def _identity(path: Path) -> _Identity:
    found = os.stat(path)
    return found.st_dev, found.st_ino


class StoreHealth:
    def __init__(
        self,
        config: Config,
        *,
        say: Callable[[str], None],
        on_lost: Callable[[str], None],
        connection: Connection | None = None,
    ) -> None:
        self._config = config
        self._connection = connection
        """The server's store, when there is no database file here to watch."""
        self._say = say
        self._on_lost = on_lost
        self.min_free = config.min_free_space
        self.reserve_path = config.storage_dir / RESERVE_NAME
        self.reserve_bytes = min(self.min_free // 2, RESERVE_MAX)
        self._reserved = False
        self._space_checked_at = -1.0
        self.full: str | None = None
        """Why submits are refused for want of space, else None."""
        self.lost: str | None = None
        self._watched: dict[Path, _Identity] = {}
        self._dirs: dict[Path, _Identity] = {}
        self._pins: dict[Path, int] = {}
        """Directories held open, so that a removed one's inode number cannot be reused
        by its replacement and hide it."""
        self._timer: asyncio.TimerHandle | None = None

    # start and stop ------------------------------------------------------------------------

    def remember(self) -> None:
        """Note the identity of the storage directory, the database and its WAL (as opened
        now), and make the reserve."""
        if self._connection is not None:
            self._recreate_dirs()  # no file of the store here: only its directories
            return
        database = self._config.database_path
        for path in (self._config.storage_dir, database, Path(f"{database}-wal")):
            try:
                self._watched[path] = _identity(path)
            except FileNotFoundError:
                continue  # a WAL appears with the first write; it is watched from then on
        self._pin(self._config.storage_dir)
        self._recreate_dirs()
        self.reserve_path.unlink(missing_ok=True)  # a stale one from a crash is made anew
        self._check_space(time.monotonic())

    def reconfigure(self, config: Config) -> None:
        """SIGHUP: a new `min_free_space` applies at once (a reserve of the new size). The
        storage itself is the one opened: a changed `storage` applies after a restart."""
        if self._connection is not None:
            return
        reserve = min(config.min_free_space // 2, RESERVE_MAX)
        if self._reserved and reserve != self.reserve_bytes:
            self.reserve_path.unlink(missing_ok=True)
            self._reserved = False
        self.min_free, self.reserve_bytes = config.min_free_space, reserve
        self._check_space(time.monotonic())

    def start(self) -> None:
        self._timer = asyncio.get_running_loop().call_later(CHECK_SECONDS, self._tick)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for fd in self._pins.values():
            os.close(fd)
        self._pins.clear()

    # the journal's questions -----------------------------------------------------------------

    def admit(self) -> None:
        if self.lost is not None:
            raise StoreUnavailable(ErrorCode.STORE_UNAVAILABLE, self.lost)
        if self._connection is not None:
            if self._connection.gone is not None:
                self._lose(self._connection.gone)
                raise StoreUnavailable(ErrorCode.STORE_UNAVAILABLE, self.lost or "")
            if self._connection.offline is not None:
                raise StoreUnavailable(ErrorCode.STORE_UNAVAILABLE, self._connection.offline)
            return
        now = time.monotonic()
        if now - self._space_checked_at >= SPACE_CACHE_SECONDS:
            self._check_space(now)
        if self.full is not None:
            raise StoreFull(ErrorCode.STORE_FULL, self.full)

    def verify_database(self) -> None:
        """One `stat` before each commit: nothing is acknowledged into a deleted file."""
        if self._connection is not None:
            return  # the server's: a failed commit says so itself
        if self.lost is None:
            self._check_identity(self._config.database_path, "database")
        if self.lost is not None:
            raise StoreUnavailable(ErrorCode.STORE_UNAVAILABLE, self.lost)

    @property
    def short_of_space(self) -> bool:
        return self.full is not None

    def commit_failed_full(self) -> None:
        if self._connection is not None:
            return
        self._check_space(time.monotonic(), release=True)

    # checks ----------------------------------------------------------------------------------

    def _tick(self) -> None:
        self._timer = None
        try:
            self.check()
        finally:
            if self.lost is None:
                self.start()

    def check(self) -> None:
        """Everything, once: identities, missing directories, free space."""
        if self._connection is not None:
            if self._connection.gone is not None:
                self._lose(self._connection.gone)
                return
            self._recreate_dirs()
            return
        database = self._config.database_path
        checks = (
            (self._config.storage_dir, "storage directory"),
            (database, "database"),
            (Path(f"{database}-wal"), "database's WAL"),
        )
        for path, what in checks:
            self._check_identity(path, what)
            if self.lost is not None:
                return
        self._check_readable(database)
        if self.lost is not None:
            return
        self._recreate_dirs()
        self._check_space(time.monotonic())

    def _check_identity(self, path: Path, what: str) -> None:
        opened = self._watched.get(path)
        try:
            now = _identity(path)
        except FileNotFoundError:
            if opened is not None:
                self._lose(f"the {what} {path} was deleted")
            return
        except OSError as exc:
            self._lose(f"the {what} {path} cannot be examined: {exc}")
            return
        if opened is None:
            self._watched[path] = now  # the WAL, made since the start
        elif now != opened:
            self._lose(f"the {what} {path} was replaced by another file")

    def _check_readable(self, database: Path) -> None:
        # Permissions only, never by opening the file: closing a descriptor of our own on
        # it would drop SQLite's POSIX locks held by this process (a known SQLite caveat).
        if not os.access(database, os.R_OK | os.W_OK):
            self._lose(f"the database {database} is no longer readable and writable")

    def _recreate_dirs(self) -> None:
        """Logs, job output and lock files: made again when missing. A worker may have made
        one again already (it must, to run its attempt): a new identity says so."""
        config = self._config
        for directory in (config.logs_dir, config.job_output_dir, config.locks_dir):
            try:
                if not directory.is_dir():
                    directory.mkdir(parents=True, exist_ok=True)
                now = _identity(directory)
            except OSError as exc:
                self._say(f"{directory} is missing and cannot be made again: {exc}")
                continue
            before = self._dirs.get(directory)
            self._dirs[directory] = now
            if before != now:
                self._pin(directory)
            if before is not None and before != now:
                self._say(f"{directory} was removed (by hand?): made it again")

    def _pin(self, directory: Path) -> None:
        old = self._pins.pop(directory, None)
        if old is not None:
            os.close(old)
        try:
            self._pins[directory] = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            return

    def _lose(self, reason: str) -> None:
        if self.lost is not None:
            return
        self.lost = (
            f"{reason}; bgjobd stops acknowledging jobs and exits rather than store them "
            "into nothing"
        )
        self._on_lost(self.lost)

    # space -----------------------------------------------------------------------------------

    def _free(self) -> int | None:
        try:
            found = os.statvfs(self._config.storage_dir)
        except OSError:
            return None  # a vanished directory: the identity check reports it
        return found.f_bavail * found.f_frsize

    def _free_or(self, known: int) -> int:
        free = self._free()
        return known if free is None else free

    def _check_space(self, now: float, *, release: bool = False) -> None:
        self._space_checked_at = now
        if self.min_free <= 0:
            return
        free = self._free()
        if free is None:
            return
        if self._reserved and (release or free < self.min_free):
            self.reserve_path.unlink(missing_ok=True)
            self._reserved = False
            self._say(
                f"storage is nearly full ({format_size(free)} free): released "
                f"{format_size(self.reserve_bytes)} of reserve for running jobs' records"
            )
            free = self._free_or(free)
        if not self._reserved and free >= self.min_free + self.reserve_bytes:
            self._reserved = self._make_reserve()
            free = self._free_or(free)
        refuse = free < self.min_free or (self.reserve_bytes > 0 and not self._reserved)
        if refuse and self.full is None:
            self.full = (
                f"the store's disk is full: {format_size(free)} free on "
                f"{self._config.storage_dir}, bgjobd needs {format_size(self.min_free)} "
                f"and its {format_size(self.reserve_bytes)} reserve (daemon.min_free_space)"
            )
            self._say(f"submits refused: {self.full}")
        elif not refuse and self.full is not None:
            self.full = None
            self._say(f"space is back ({format_size(free)} free): submits accepted again")

    def _make_reserve(self) -> bool:
        if self.reserve_bytes <= 0:
            return True
        try:
            fd = os.open(
                self.reserve_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o640
            )
        except OSError:
            return False
        try:
            try:
                os.posix_fallocate(fd, 0, self.reserve_bytes)
            except OSError as exc:
                if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                    raise
                _write_zeros(fd, self.reserve_bytes)  # a filesystem without fallocate
        except OSError:
            os.close(fd)
            self.reserve_path.unlink(missing_ok=True)
            return False
        os.close(fd)
        return True


def _write_zeros(fd: int, size: int) -> None:
    chunk = bytes(1 << 20)
    left = size
    while left > 0:
        left -= os.write(fd, chunk[: min(left, len(chunk))])
    os.fsync(fd)
