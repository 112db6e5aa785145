"""When no daemon answers: the job is spooled beside the store, and one drainer per host
runs what the spool holds until the daemon is back (see `bgjobd.spool`, `bgjobd.drain`).

A fallback costs about what a submit costs: the daemon's own checks (the allow-list, so a
refusal raises `RefusedError` here as it would with the daemon up; params size; times;
key), one small file written atomically, and a look at the drainer lock. A process is
started only when no drainer runs, and it is handed the lock itself (an inherited flock),
so however many callers fall back at once, one drainer starts. Parameters stay in the
file (0600, whatever the application's umask): never on a command line.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TypeVar

from bgjobd import filemodes, spool, submission
from bgjobd.spool import Modes
from bgjobd.store.base import Store
from bgjobd.store.offline import StoreOffline
from bgjobd.store.open import StoreUnreachable, open_postgres
from bgjobd.store.sqlite import SQLiteStore
from bgjobs.config import Config
from bgjobs.model import JobInfo, JobSpec

_T = TypeVar("_T")
POLL_SECONDS: Final = 0.1
"""How often a handle looks at the store for a spooled job while no daemon answers."""


class Spooler:
    """Spools the jobs of one configuration and makes sure a drainer runs."""

    def __init__(self, config: Config, config_path: str | None, socket_path: str | None) -> None:
        self.config = config
        self.config_path = config_path
        self.socket_path = socket_path
        self._directory: Path | None = None
        self._modes: Modes | None = None

    def spool(self, spec: JobSpec) -> SpooledJob:
        """Check the job as the daemon would (RefusedError, TooLarge, BadParams: nothing
        spooled), store it durably, and make sure a drainer runs."""
        now = time.time()
        submission.build(self.config, spec, now, "client")
        modes = self._modes_now()
        if self._directory is None or not self._directory.is_dir():
            self._directory = spool.prepare(self.config.storage_dir, modes)
        spool.write(self._directory, spec, now, modes, fsync=self.config.settings.daemon.fsync)
        self._ensure_drainer(self._directory, modes)
        assert spec.key is not None
        return SpooledJob(spec.key, self.config)

    def _modes_now(self) -> Modes:
        if self._modes is None:
            wanted = filemodes.modes_of(self.config)
            self._modes = Modes(wanted.directory_mode, wanted.file_mode, wanted.gid)
        return self._modes

    def _ensure_drainer(self, directory: Path, modes: Modes) -> None:
        lock = spool.try_lock(directory, modes.file)
        if lock is None:
            return  # a drainer runs: it looks at the spool again before it exits
        try:
            spawn_drainer(self.drainer_command(lock), lock)
        finally:
            os.close(lock)  # the drainer holds it now (the same open file)

    def drainer_command(self, lock: int) -> list[str]:
        command = [sys.executable, "-m", "bgjobd.drain"]
        if self.config_path:
            command += ["--config", self.config_path]
        if self.socket_path:
            command += ["--socket", self.socket_path]
        return [*command, "--lock-fd", str(lock)]


def spawn_drainer(command: list[str], lock: int) -> None:
    """Start the drainer in a new session with no inherited pipes, so neither the caller's
    exit nor its terminal stops it; a thread reaps it, so it never lingers as a zombie."""
    quiet = subprocess.DEVNULL
    process = subprocess.Popen(
        command,
        stdin=quiet,
        stdout=quiet,
        stderr=quiet,
        close_fds=True,
        pass_fds=(lock,),
        start_new_session=True,
    )
    threading.Thread(target=process.wait, name="bgjobs-drainer-reaper", daemon=True).start()


@dataclass(frozen=True)
class SpooledJob:
    """A job spooled by its key: found in the store (read-only) once imported."""

    key: str
    config: Config

    def ids(self) -> list[int] | None:
        """The ids of the job's links once the job is in the store, else None."""
        return self._read(lambda store: store.find_by_key(self.key))

    def stored(self, job_id: int) -> JobInfo | None:
        return self._read(lambda store: store.get(job_id))

    def _read(self, question: Callable[[Store], _T | None]) -> _T | None:
        """The store's answer, or None while it cannot give one (no store yet, or its
        server out of reach: the drainer imports the job once it can)."""
        if self.config.settings.store.backend == "postgresql":
            return _read_postgres(self.config, question)
        try:
            store = SQLiteStore.reader(self.config.database_path)
        except sqlite3.Error:
            return None  # no store yet
        try:
            return question(store)
        except sqlite3.Error:
            return None
        finally:
            store.close()


def _read_postgres(config: Config, question: Callable[[Store], _T | None]) -> _T | None:
    import psycopg  # only with this backend

    try:
        store = open_postgres(config)
    except (StoreUnreachable, psycopg.Error):
        return None
    try:
        return question(store)
    except (StoreOffline, psycopg.Error):
        return None
    finally:
        store.close()


def remaining(deadline: float | None) -> float | None:
    """Seconds left until `deadline` (monotonic), None for no deadline; TimeoutError past it."""
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError
    return left


DAEMON_SLICE_SECONDS: Final = 1.0


def through_daemon(deadline: float | None) -> float:
    """How long to wait through the daemon before looking at the store again: a drainer
    may end the job without the daemon hearing of it (it then learns only when it
    imports the spool file, which the drainer may have removed)."""
    left = remaining(deadline)
    return DAEMON_SLICE_SECONDS if left is None else min(DAEMON_SLICE_SECONDS, left)
