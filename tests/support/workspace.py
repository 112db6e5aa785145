"""A private directory per test with its configuration, storage, socket and test jobs, and
the means to run the real commands (`bgjobd`, `bgjobctl`, `run_job.py`) in it."""

from __future__ import annotations

import copy
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

import tomli_w

from bgjobctl.address import Address
from bgjobctl.client import Client
from bgjobs.errors import BgjobsError, DaemonUnreachable, StoreUnavailable
from bgjobs.model import JobInfo, JobSpec
from tests.support.procs import MARKER_ENV, kill_marked
from tests.support.waiting import wait_for

REPO = Path(__file__).resolve().parents[2]
TEST_JOBS = REPO / "tests" / "testjobs"

DEFAULT_SETTINGS: dict[str, Any] = {
    "jobs_package": "testjobs",
    "retry_attempts": 0,
    "retry_delay_seconds": 0.1,
    "max_execution_time": 30,
    "allowed_jobs": {
        "Echo": ["handle"],
        "AsyncEcho": ["handle"],
        "Sleep": ["handle"],
        "Fail": ["handle"],
        "Raise": ["handle"],
        "Crash": ["handle"],
        "Flaky": ["handle"],
        "SpawnGrandchild": ["handle"],
        "Record": ["handle"],
        "Add": ["handle"],
        "Printer": ["handle"],
        "SelfDecides": ["retry", "fail"],
        "Unencodable": ["handle"],
        "Chatty": ["handle", "fail"],
    },
    "daemon": {"workers": 2, "kill_grace": 1, "shutdown_timeout": 5},
    "dashboard": {"enabled": False},
}


def merged(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    result = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merged(result[key], value)
        else:
            result[key] = value
    return result


# Every workspace made during the current test, so that the suite can close (and check) the
# ones a test made by hand and forgot.
OPENED: list[Workspace] = []


class DaemonProcess:
    def __init__(
        self,
        workspace: Workspace,
        config: Path,
        *,
        own_pid_env: str | None = None,
        socket_path: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        """Start bgjobd; with `own_pid_env`, that variable holds the daemon's own pid from
        its first instruction on (as systemd sets WATCHDOG_PID), through a shell that
        exports its pid and execs the daemon in its place. `socket_path`: where it
        answers, when not the workspace's socket (one of several daemons). `env`: variables
        over the workspace's."""
        self.workspace = workspace
        self.socket_path = socket_path or workspace.socket_path
        self.stderr_path = workspace.root / f"bgjobd-{uuid.uuid4().hex[:6]}.err"
        stderr = self.stderr_path.open("wb")
        command = [sys.executable, "-m", "bgjobd", "--config", str(config)]
        if own_pid_env is not None:
            command = ["/bin/sh", "-c", f'export {own_pid_env}=$$; exec "$@"', "sh", *command]
        self.process = subprocess.Popen(
            command,
            cwd=workspace.root,
            env={**workspace.env, **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=stderr,
            stderr=stderr,
            start_new_session=True,
        )
        stderr.close()  # the daemon holds its own copy; we read the file by name

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def answers(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"bgjobd exited with {self.process.returncode}:\n{self.stderr}")
        try:
            with Client(Address(unix_path=self.socket_path), timeout=5) as client:
                client.ping()
        except BgjobsError:
            return False
        return True

    def wait_ready(self, timeout: float = 20.0) -> DaemonProcess:
        wait_for(self.answers, timeout=timeout, what="bgjobd to answer")
        return self

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM and wait; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def kill(self) -> None:
        """SIGKILL the daemon alone (its workers see it go and take their jobs down)."""
        self.process.kill()
        self.process.wait(10)

    def submits_until_exit(self, spec: JobSpec, timeout: float = 20) -> tuple[int, set[str]]:
        """Submit `spec` again and again until the daemon exits (its store lost): how many
        submits it acknowledged, and how it refused the others."""
        acknowledged = 0
        refusals: set[str] = set()

        def gone() -> bool:
            nonlocal acknowledged
            try:
                with Client(Address(unix_path=self.socket_path), timeout=5) as client:
                    client.submit([spec])
            except StoreUnavailable:
                refusals.add("store_unavailable")
            except DaemonUnreachable:
                refusals.add("unreachable")
            except BgjobsError as exc:
                refusals.add(repr(exc))
            else:
                acknowledged += 1
            return self.process.poll() is not None

        wait_for(gone, timeout=timeout, what="the daemon to exit")
        return acknowledged, refusals


class Workspace:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.marker = uuid.uuid4().hex
        # Unix socket paths are limited to ~107 bytes: keep the socket in a short directory.
        self.socket_dir = Path(tempfile.mkdtemp(prefix="bgj-", dir="/tmp"))
        self.socket_path = self.socket_dir / "d.sock"
        (root / "testjobs").symlink_to(TEST_JOBS, target_is_directory=True)
        self.config_path = root / "bgjobs.toml"
        self.env = {
            **os.environ,
            MARKER_ENV: self.marker,
            "BGJOBS_CONFIG": str(self.config_path),
            "PYTHONPATH": os.pathsep.join(
                p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p
            ),
        }
        self.env.pop("BGJOBS_SOCKET", None)
        self.daemons: list[DaemonProcess] = []
        self._clients: list[Client] = []
        self.settings: dict[str, Any] = {}
        self.closed = False
        self.leftovers: list[str] = []
        OPENED.append(self)
        self.write_config()

    # configuration ---------------------------------------------------------------------

    def write_config(self, extra: dict[str, Any] | None = None, *, raw: str | None = None) -> Path:
        """Write bgjobs.toml: the defaults with `extra` merged in (or `raw` text as is)."""
        if raw is not None:
            self.config_path.write_text(raw)
            return self.config_path
        self.settings = merged(DEFAULT_SETTINGS, {"daemon": {"socket": str(self.socket_path)}})
        self.settings = merged(self.settings, extra or {})
        self.config_path.write_bytes(tomli_w.dumps(self.settings).encode())
        return self.config_path

    @property
    def storage(self) -> Path:
        return self.root / "storage"

    def log(self, name: str = "background_jobs.log") -> str:
        path = self.storage / "logs" / name
        return path.read_text() if path.exists() else ""

    def error_log(self) -> str:
        return self.log("background_jobs_errors.log")

    def lock_files(self) -> list[Path]:
        return sorted((self.storage / "jobs").glob("*.lock"))

    # commands ----------------------------------------------------------------------------

    def run(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, *args],
            check=False,
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    def bgjobctl(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        return self.run("-m", "bgjobctl", *args, timeout=timeout)

    def run_job(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        return self.run(str(REPO / "run_job.py"), *args, timeout=timeout)

    def start_daemon(self, *, ready: bool = True) -> DaemonProcess:
        daemon = DaemonProcess(self, self.config_path)
        self.daemons.append(daemon)
        return daemon.wait_ready() if ready else daemon

    def client(self) -> Client:
        """A client of this workspace's daemon, closed when the test ends."""
        client = Client(Address(unix_path=self.socket_path), timeout=30)
        self._clients.append(client)
        return client

    def client_store_job(self, job_id: int) -> JobInfo:
        """A job as the store has it (for one-shot runs, which have no daemon to ask)."""
        from bgjobd.store.sqlite import SQLiteStore

        store = SQLiteStore(self.storage / "bgjobs.db")
        try:
            job = store.get(job_id)
        finally:
            store.close()
        assert job is not None, f"job {job_id} is not in the store"
        return job

    # cleanup -----------------------------------------------------------------------------

    def close(self) -> list[str]:
        """Stop the daemons, then kill whatever the test left running; describe those
        leftovers (pid and command line): a test that leaves processes behind fails."""
        for client in self._clients:
            client.close()
        for daemon in self.daemons:
            if daemon.process.poll() is None:
                try:
                    daemon.stop(timeout=15)
                except subprocess.TimeoutExpired:
                    daemon.kill()
        leftovers = kill_marked(self.marker)
        shutil.rmtree(self.socket_dir, ignore_errors=True)
        self.closed = True
        self.leftovers = leftovers
        return leftovers
