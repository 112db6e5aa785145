"""A peer's worker processes, each started as a real process of its own (a session of its
own, the run's marker in its environment, its output in a log file) and stopped whatever
happens."""

from __future__ import annotations

import contextlib
import signal
import subprocess
from pathlib import Path

from bench import procs


class PeerProcesses:
    def __init__(
        self, workdir: Path, label: str, commands: list[list[str]], env: dict[str, str]
    ) -> None:
        self.log_path = workdir / f"{label}.log"
        self._log = self.log_path.open("ab")
        self.processes: list[subprocess.Popen[bytes]] = []
        try:
            for command in commands:
                self.processes.append(
                    subprocess.Popen(
                        command,
                        cwd=workdir,
                        env=procs.child_env(env),
                        stdin=subprocess.DEVNULL,
                        stdout=self._log,
                        stderr=self._log,
                        start_new_session=True,
                    )
                )
        except BaseException:
            self.stop()
            raise

    def pids(self) -> list[int]:
        """Every live process: the ones started and their descendants."""
        return [pid for process in self.processes for pid in procs.tree(process.pid)]

    def exited(self) -> str | None:
        """Which process exited already (a worker that died at start), or None."""
        for process in self.processes:
            if process.poll() is not None:
                return f"pid {process.pid} exited with {process.returncode}:\n{self.tail()}"
        return None

    def tail(self, lines: int = 15) -> str:
        with contextlib.suppress(OSError):
            text = self.log_path.read_text(errors="replace").splitlines()
            return "\n".join(text[-lines:])
        return ""

    def stop(self, signum: int = signal.SIGTERM) -> float | None:
        """Each process asked to stop (then killed); the longest polite stop, or None if
        one had to be killed."""
        took: list[float | None] = [
            procs.stop_process(process, signum) for process in self.processes
        ]
        self._log.close()
        if any(value is None for value in took):
            return None
        return max((value for value in took if value is not None), default=0.0)
