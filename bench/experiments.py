"""What-if experiments: the daemon and its workers with one cost taken away, to measure
what that cost is worth (for the profile's suggestions; the code itself is not changed).

A patch list in `$BGJOBS_BENCH_PATCHES` is applied at interpreter start by
bench/patch_site/sitecustomize.py, which the experiment puts first on PYTHONPATH, so both
`python -m bgjobd` and every `python -m bgjobd.worker` it starts are patched alike.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

PATCHES_ENV: Final = "BGJOBS_BENCH_PATCHES"
SITE_DIR: Final = Path(__file__).resolve().parent / "patch_site"


def _no_locks() -> None:
    from bgjobd import locks
    from bgjobd.attempts import Attempts

    def acquire(path: Path, info: Any) -> None:
        return None

    def release(path: str | os.PathLike[str]) -> None:
        return None

    def start_watching_locks(self: Attempts) -> None:
        return None  # a missing lock file means "cancel": the watcher must not look

    locks.acquire = acquire
    locks.release = release
    Attempts.start_watching_locks = start_watching_locks  # type: ignore[method-assign]


def _sync_off() -> None:
    from bgjobd.store.sqlite import SQLiteStore

    original = SQLiteStore.__init__

    def init(self: SQLiteStore, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)  # whatever its parameters are today
        self._db.execute("PRAGMA synchronous = OFF")  # no fdatasync, even at checkpoints

    SQLiteStore.__init__ = init  # type: ignore[method-assign]


def _big_cache() -> None:
    from bgjobd.store.sqlite import SQLiteStore

    original = SQLiteStore.__init__

    def init(self: SQLiteStore, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self._db.execute("PRAGMA cache_size = -65536")  # 64 MiB instead of SQLite's 2 MiB

    SQLiteStore.__init__ = init  # type: ignore[method-assign]


def _count_calls() -> None:
    """Counts commits, statements, log lines and lock files; prints them at exit."""
    import atexit
    import sys
    from collections import Counter

    from bgjobd import locks
    from bgjobd.joblog import JobLog
    from bgjobd.store.sqlite import SQLiteStore

    counts: Counter[str] = Counter()

    def counting(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            counts[name] += 1
            return function(*args, **kwargs)

        return wrapper

    original_commit = SQLiteStore.commit

    def commit(self: SQLiteStore) -> None:
        if self._db.in_transaction:
            counts["COMMIT"] += 1
        original_commit(self)

    SQLiteStore.commit = commit  # type: ignore[method-assign]
    SQLiteStore._write = counting("write statement", SQLiteStore._write)  # type: ignore[method-assign]
    JobLog.write = counting("log line", JobLog.write)  # type: ignore[method-assign]
    locks.acquire = counting("lock file", locks.acquire)

    def dump() -> None:
        print(f"bench-counts {dict(counts)}", file=sys.stderr, flush=True)

    atexit.register(dump)


def _no_log() -> None:
    from bgjobd.joblog import JobLog

    def write(self: JobLog, status: Any, label: str, message: str) -> None:
        return None

    JobLog.write = write  # type: ignore[method-assign]


def _no_capture() -> None:
    from bgjobd.capture import Output

    def capture(self: Output, target: str) -> None:
        return None

    def release(self: Output) -> None:
        return None

    Output.capture = capture  # type: ignore[method-assign]
    Output.release = release  # type: ignore[method-assign]


PATCHES: Final[dict[str, Callable[[], None]]] = {
    "nolocks": _no_locks,
    "nolog": _no_log,
    "nocapture": _no_capture,
    "syncoff": _sync_off,
    "bigcache": _big_cache,
    "count": _count_calls,
}


def apply_from_environment() -> None:
    for name in filter(None, os.environ.get(PATCHES_ENV, "").split(",")):
        PATCHES[name]()


def environment(patches: list[str]) -> dict[str, str]:
    """Extra environment for a daemon run with these patches."""
    unknown = set(patches) - set(PATCHES)
    if unknown:
        raise ValueError(f"unknown patches: {', '.join(sorted(unknown))}")
    if not patches:
        return {}
    repo = str(Path(__file__).resolve().parents[1])
    return {PATCHES_ENV: ",".join(patches), "PYTHONPATH": os.pathsep.join((str(SITE_DIR), repo))}
