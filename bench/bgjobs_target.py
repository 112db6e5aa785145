"""bgjobs under test: a private directory with its own bgjobs.toml, the daemon started
from it (`python -m bgjobd --config PATH`), and jobs submitted with `run_background_job()`."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Final

from bench import procs
from bgjobctl.address import Address
from bgjobctl.client import Client
from bgjobctl.library import run_background_job
from bgjobctl.many import JOBS_PER_REQUEST, run_background_jobs
from bgjobs.errors import BgjobsError

BENCH_JOBS: Final = Path(__file__).resolve().parent / "jobs"
JOBS_PACKAGE: Final = "benchjobs"
ALLOWED: Final = ("Noop", "Say", "Incr", "Late", "SleepIncr")


def config_text(socket: Path, *, storage: str, workers: int, fsync: bool, dashboard: bool) -> str:
    # Written by hand: four flat tables do not need a TOML writer as a dependency.
    allowed = "\n".join(f'{name} = ["handle"]' for name in ALLOWED)
    return f"""\
jobs_package = "{JOBS_PACKAGE}"
retry_attempts = 0
max_execution_time = 120

[allowed_jobs]
{allowed}

[daemon]
socket = "{socket}"
storage = "{storage}"
workers = {workers}
fsync = {"true" if fsync else "false"}
isolation = "warm"
shutdown_timeout = 10
kill_grace = 1

[dashboard]
enabled = {"true" if dashboard else "false"}
"""


class Workspace:
    """A temporary directory: bgjobs.toml, storage/, the socket, and the jobs package."""

    def __init__(
        self, label: str, *, workers: int = 2, fsync: bool = False, tmpfs: bool = False
    ) -> None:
        # Unix socket paths are limited to ~107 bytes: a short directory under /tmp.
        self.root = Path(tempfile.mkdtemp(prefix=f"bgb-{label}-", dir="/tmp"))
        self.socket = self.root / "d.sock"
        self.config = self.root / "bgjobs.toml"
        self.fsync = fsync
        # tmpfs (an experiment only): the store, logs and lock files skip the disk's journal.
        self._shm = Path(tempfile.mkdtemp(prefix="bgb-", dir="/dev/shm")) if tmpfs else None
        self.storage = (self._shm or self.root) / "storage"
        (self.root / JOBS_PACKAGE).symlink_to(BENCH_JOBS, target_is_directory=True)
        text = config_text(
            self.socket, storage=str(self.storage), workers=workers, fsync=fsync, dashboard=False
        )
        self.config.write_text(text)

    @property
    def database(self) -> Path:
        return self.storage / "bgjobs.db"

    def client(self) -> Client:
        return Client(Address(unix_path=self.socket), timeout=30)

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
        if self._shm is not None:
            shutil.rmtree(self._shm, ignore_errors=True)


class Daemon:
    """One `bgjobd` process of a workspace, in its own process group."""

    default_code: Path | None = None
    """The checkout every daemon runs from unless told (run.py's --daemon-code): None for
    this one."""

    def __init__(
        self, workspace: Workspace, env: dict[str, str] | None = None, code: Path | None = None
    ) -> None:
        """`code`: run the daemon (and its workers) from another checkout of bgjobs."""
        self.workspace = workspace
        self.log_path = workspace.root / f"bgjobd-{int(time.time() * 1000)}.err"
        self._log = self.log_path.open("wb")
        self.started = time.perf_counter()
        child_env = procs.child_env(env)
        code = code or Daemon.default_code
        if code is not None:
            child_env["PYTHONPATH"] = os.pathsep.join((str(code), child_env["PYTHONPATH"]))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bgjobd", "--config", str(workspace.config)],
            cwd=workspace.root,
            env=child_env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def tail(self, lines: int = 15) -> str:
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def wait_ready(self, timeout: float = 60.0) -> float:
        """Seconds from starting the process to its first successful ping."""
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"bgjobd exited with {self.process.returncode}:\n{self.tail()}")
            client = self.workspace.client()
            try:
                client.ping()
                return time.perf_counter() - self.started
            except BgjobsError:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"bgjobd did not answer in {timeout}s:\n{self.tail()}"
                    ) from None
                time.sleep(0.002)
            finally:
                client.close()

    def stop(self) -> float | None:
        """SIGTERM (the daemon drains and exits); returns how long that took."""
        try:
            return procs.stop_process(self.process, signal.SIGTERM, timeout=30)
        finally:
            self._log.close()


class BgjobsTarget:
    """The workloads' view of a running bgjobs daemon."""

    def __init__(self, daemon: Daemon, name: str = "bgjobs") -> None:
        self.name = name
        self.daemon = daemon
        self._config = str(daemon.workspace.config)
        self._stats_client = daemon.workspace.client()

    def root_pid(self) -> int:
        return self.daemon.pid

    def roles(self) -> dict[str, list[int]]:
        return {"daemon": [self.daemon.pid], "workers": procs.tree(self.daemon.pid)[1:]}

    def _next_config(self) -> str:
        """The config (so the socket) of the daemon the next submit goes to."""
        return self._config

    def _submit(self, class_name: str, params: list[object], delay: float = 0) -> None:
        # fallback="error": a dead daemon must fail the benchmark, not spawn run_job.py.
        config = self._next_config()
        run_background_job(class_name, "handle", params, delay, config=config, fallback="error")

    def noop(self) -> None:
        self._submit("Noop", [])

    def incr(self, key: str) -> None:
        self._submit("Incr", [key])

    def late(self, path: str, due: float, delay: float) -> None:
        self._submit("Late", [path, due], delay)

    def sleep_incr(self, seconds: float, key: str) -> None:
        self._submit("SleepIncr", [seconds, key])

    def bulk_noop(self, count: int) -> None:
        """`count` no-op jobs due in an hour, with the bulk enqueue (`run_background_jobs`),
        a request of JOBS_PER_REQUEST jobs at a time (round robin over the nodes)."""
        for start in range(0, count, JOBS_PER_REQUEST):
            jobs = [("Noop", "handle")] * min(JOBS_PER_REQUEST, count - start)
            run_background_jobs(jobs, 3600, config=self._next_config(), fallback="error")

    def finished(self) -> tuple[int, int] | None:
        """(succeeded, failed or cancelled) from the daemon's stats: its own count."""
        counts = self._stats_client.stats().counts
        return counts["succeeded"], counts["failed"] + counts["cancelled"]

    def close(self) -> None:
        self._stats_client.close()
