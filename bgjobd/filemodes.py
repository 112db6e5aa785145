"""Who may read what bgjobd writes: its owner alone, or also an operators' group.

Every process of bgjobd (the daemon, its workers, `run_job.py`) sets its umask first, so no
file it or SQLite creates (database, WAL, logs, job output, lock and token files) is ever
readable by other users, whatever umask it was started with. Without `[daemon] group`:
directories 0700, files 0600. With it: directories 0750 + setgid (so what is created inside
gets that group), files 0640.

Files left by an earlier version with looser modes are tightened at start, but only those
bgjobd's user owns: a file it does not own is never touched.
"""

from __future__ import annotations

import grp
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

from bgjobs.errors import ConfigError

if TYPE_CHECKING:  # the worker imports this module first thing: keep it light
    from bgjobs.config import Config

PRIVATE_UMASK: Final = 0o077
GROUP_UMASK: Final = 0o027


@dataclass(frozen=True)
class FileModes:
    gid: int | None
    """The operators' group, or None: the owner alone."""

    @property
    def umask(self) -> int:
        return PRIVATE_UMASK if self.gid is None else GROUP_UMASK

    @property
    def directory_mode(self) -> int:
        return 0o700 if self.gid is None else 0o2750

    @property
    def file_mode(self) -> int:
        return 0o600 if self.gid is None else 0o640


def modes_of(config: Config) -> FileModes:
    """The modes the configuration asks for; ConfigError when the group does not exist."""
    name = config.settings.daemon.group
    if name is None:
        return FileModes(gid=None)
    try:
        return FileModes(gid=grp.getgrnam(name).gr_gid)
    except KeyError:
        raise ConfigError(f"daemon.group: there is no group named {name!r}") from None


def restrict_umask(modes: FileModes) -> None:
    os.umask(modes.umask)


def keep_others_out() -> None:
    """For a process started by bgjobd (a worker): whatever the umask it inherited, never
    give other users anything; the group bits stay as the parent chose them."""
    os.umask(os.umask(PRIVATE_UMASK) | 0o007)


def prepare_storage(config: Config, modes: FileModes, say: Callable[[str], None]) -> None:
    """Create the storage directories, and give what bgjobd owns there the configured modes
    and group (saying so): an earlier version's looser files, or a changed `group`."""
    storage = config.storage_dir
    _refuse_shared(storage)
    for directory in (storage, config.logs_dir, config.job_output_dir, config.locks_dir):
        existed = directory.exists()
        settled = existed and _has(directory, modes, modes.directory_mode)
        directory.mkdir(mode=modes.directory_mode & 0o777, parents=True, exist_ok=True)
        _settle(directory, modes, modes.directory_mode, say if existed else _quietly)
        if directory == config.job_output_dir and (settled or not existed):
            # Its files were made under the same modes: do not stat every job's output
            # file at each start.
            continue
        for entry in _files_in(directory):
            _settle(entry, modes, _file_mode(entry, modes), say)


def _file_mode(path: Path, modes: FileModes) -> int:
    # A token is a credential, not data for operators.
    return 0o600 if path.suffix == ".token" else modes.file_mode


def _quietly(message: str) -> None:
    pass


def _refuse_shared(storage: Path) -> None:
    if storage.exists() and storage.stat().st_mode & stat.S_IWOTH:
        raise ConfigError(
            f"daemon.storage: {storage} is writable by every user; "
            "give bgjobd a directory of its own (e.g. a subdirectory)"
        )


def _files_in(directory: Path) -> Iterator[Path]:
    with os.scandir(directory) as entries:
        for entry in entries:
            if entry.is_file(follow_symlinks=False):
                yield Path(entry.path)


def _has(path: Path, modes: FileModes, wanted: int) -> bool:
    info = path.lstat()
    group_ok = modes.gid is None or info.st_gid == modes.gid
    return group_ok and stat.S_IMODE(info.st_mode) == wanted


def _settle(path: Path, modes: FileModes, wanted: int, say: Callable[[str], None]) -> None:
    """Give a path bgjobd owns the wanted mode and the operators' group."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        return
    if info.st_uid != os.geteuid() or stat.S_ISLNK(info.st_mode):
        return
    current = stat.S_IMODE(info.st_mode)
    changes: list[str] = []
    if modes.gid is not None and info.st_gid != modes.gid:
        try:
            os.chown(path, -1, modes.gid, follow_symlinks=False)
        except PermissionError:
            raise ConfigError(
                f"daemon.group: cannot give {path} to group {modes.gid}; "
                "bgjobd's user must be a member of that group"
            ) from None
        changes.append(f"group {info.st_gid} -> {modes.gid}")
    if current != wanted:
        os.chmod(path, wanted)
        changes.append(f"mode {current:04o} -> {wanted:04o}")
    if changes:
        verb = "set" if wanted & ~current & 0o777 else "tightened"
        say(f"{verb} {path}: {', '.join(changes)}")
