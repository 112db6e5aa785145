"""Processes the benchmark starts: the marker that finds them all, their trees and their
memory, and stopping them whatever happens."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

MARKER_ENV: Final = "BGJOBS_BENCH_MARKER"
MARKER: Final = uuid.uuid4().hex
"""Every process this run starts inherits it, so the last sweep finds even grandchildren
that left their parent's process group (bgjobs' workers start their own sessions)."""


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    repo = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, MARKER_ENV: MARKER, **(extra or {})}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (repo, env.get("PYTHONPATH", "")) if p)
    for inherited in ("BGJOBS_CONFIG", "BGJOBS_SOCKET"):
        env.pop(inherited, None)
    return env


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may hold spaces and parentheses: split after the last ')'.
    return text.rsplit(")", 1)[-1].split()


def is_gone(pid: int) -> bool:
    fields = _stat_fields(pid)
    return fields is None or fields[0] in ("Z", "X")


def parents() -> dict[int, int]:
    """pid -> ppid for every live process."""
    found: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields is not None and fields[0] not in ("Z", "X"):
                found[int(entry)] = int(fields[1])
    return found


def tree(root: int) -> list[int]:
    """`root` and all its live descendants (workers are the daemon's child processes)."""
    children: dict[int, list[int]] = {}
    for pid, ppid in parents().items():
        children.setdefault(ppid, []).append(pid)
    result: list[int] = []
    todo = [root] if not is_gone(root) else []
    while todo:
        pid = todo.pop()
        result.append(pid)
        todo.extend(children.get(pid, ()))
    return result


@dataclass(frozen=True)
class Memory:
    rss_kib: int
    pss_kib: int
    processes: int
    each: tuple[tuple[int, int], ...] = ()
    """(RSS, PSS) KiB of each process, the tree's root first."""

    @property
    def rss_mib(self) -> float:
        return self.rss_kib / 1024

    @property
    def pss_mib(self) -> float:
        return self.pss_kib / 1024

    def describe(self) -> str:
        text = f"RSS {self.rss_mib:.1f} MiB, PSS {self.pss_mib:.1f} MiB ({self.processes} proc)"
        if len(self.each) > 1:
            parts = " + ".join(f"{rss / 1024:.1f}/{pss / 1024:.1f}" for rss, pss in self.each)
            text += f" = {parts} RSS/PSS, root first"
        return text


def memory(pids: Iterable[int]) -> Memory:
    """RSS and PSS summed over the processes, from /proc/PID/smaps_rollup."""
    each: list[tuple[int, int]] = []
    for pid in pids:
        try:
            lines = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
        except OSError:
            continue
        rss = pss = 0
        for line in lines:
            key, _, value = line.partition(":")
            if key == "Rss":
                rss = int(value.split()[0])
            elif key == "Pss":
                pss = int(value.split()[0])
        each.append((rss, pss))
    return Memory(sum(r for r, _ in each), sum(p for _, p in each), len(each), tuple(each))


def marked() -> list[int]:
    """Live processes carrying this run's marker (never this process)."""
    needle = f"{MARKER_ENV}={MARKER}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes()
        except OSError:
            continue
        if needle in environ.split(b"\0") and not is_gone(int(entry)):
            found.append(int(entry))
    return found


def wait_until(condition: Callable[[], bool], timeout: float, interval: float = 0.01) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True


def kill_pids(pids: Iterable[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def stop_process(
    process: subprocess.Popen[bytes], signum: int = signal.SIGTERM, timeout: float = 20.0
) -> float | None:
    """Ask a process (and its group) to stop, then kill its tree; returns how long the
    polite stop took, or None if it had to be killed."""
    pids = tree(process.pid)
    started = time.perf_counter()
    took: float | None = None
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signum)
        try:
            process.wait(timeout)
            took = time.perf_counter() - started
        except subprocess.TimeoutExpired:
            pass
    # Whatever is left of its tree (or its process group) goes now, by pid.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    kill_pids(pid for pid in pids if not is_gone(pid))
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(5)
    return took


def sweep() -> list[int]:
    """Kill every process of this run that is still alive; returns their pids."""
    leftovers = marked()
    kill_pids(leftovers)
    wait_until(lambda: all(is_gone(pid) for pid in leftovers), 10)
    return leftovers


_TICK: Final = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds a process has used so far; (0, 0) once it is gone."""
    fields = _stat_fields(pid)
    if fields is None:
        return 0.0, 0.0
    # After the command name: state is field 0, utime field 11, stime field 12.
    return int(fields[11]) / _TICK, int(fields[12]) / _TICK


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])  # without guest time, which is already in user
    return (total - idle) / _TICK, total / _TICK


@dataclass
class CpuUse:
    """CPU used per process role during one measurement, and the machine's share busy."""

    seconds: dict[str, tuple[float, float]]
    """role -> (user, system) seconds."""
    wall: float
    machine_busy: float
    """Busy CPU seconds of the whole machine over `wall` (2 cores: at most 2 * wall)."""

    def per_job(self, jobs: int) -> str:
        parts = [
            f"{role} {1e6 * (user + system) / jobs:,.0f} ({1e6 * system / jobs:,.0f} sys)"
            for role, (user, system) in self.seconds.items()
        ]
        cores = os.cpu_count() or 1
        busy = 100 * self.machine_busy / (self.wall * cores)
        ours = sum(user + system for user, system in self.seconds.values())
        others = 100 * max(0.0, self.machine_busy - ours) / (self.wall * cores)
        return (
            f"CPU µs per job: {', '.join(parts)}; machine {busy:.0f}% busy "
            f"({others:.0f}% by other processes)"
        )


class CpuMeter:
    """Measures CPU time of named process groups (role -> pids) between start and stop."""

    def __init__(self, roles: dict[str, list[int]]) -> None:
        self.roles = roles
        self._before = self._sample()
        self._machine = machine_busy()
        self._started = time.perf_counter()

    def _sample(self) -> dict[str, tuple[float, float]]:
        totals: dict[str, tuple[float, float]] = {}
        for role, pids in self.roles.items():
            user = system = 0.0
            for pid in pids:
                u, s = cpu_seconds(pid)
                user += u
                system += s
            totals[role] = (user, system)
        return totals

    def stop(self) -> CpuUse:
        after = self._sample()
        busy, _ = machine_busy()
        return CpuUse(
            {
                role: (
                    after[role][0] - self._before[role][0],
                    after[role][1] - self._before[role][1],
                )
                for role in self.roles
            },
            time.perf_counter() - self._started,
            busy - self._machine[0],
        )


def wait_for_quiet(
    limit: float = 0.15, timeout: float = 60.0, sample: float = 1.0
) -> tuple[float, float]:
    """Wait until the machine's busy share over `sample` seconds is at most `limit` (other
    processes, e.g. someone's test run, skew every figure); returns (busy share, waited s)."""
    cores = os.cpu_count() or 1
    started = time.monotonic()
    while True:
        before, _ = machine_busy()
        time.sleep(sample)
        busy = (machine_busy()[0] - before) / (sample * cores)
        waited = time.monotonic() - started
        if busy <= limit or waited >= timeout:
            return busy, waited
