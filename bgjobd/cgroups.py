"""A cgroup v2 of its own for each worker, where the host lets this process make them.

The daemon (or `run_job.py`) makes a subtree under its own cgroup, `bgjobs-PID-START`
(START: its start time, so a reused pid is told apart), and a leaf `worker-PID` per worker.
Killing a leaf kills everything an attempt started, whatever it did to leave its process
group or session. That needs the daemon's cgroup to be writable: root, or a delegated
subtree (systemd's `Delegate=yes`). Subtrees whose owner is gone (a crashed daemon) are
killed and removed when the next one starts. `BGJOBS_CGROUPS=off` turns this off.

The memory controller, where the tree has it, gives each worker a `memory.max`. cgroup v2
lets a cgroup hand controllers to its children only if it has no processes of its own
(the root excepted), so the daemon first moves itself into a leaf (`bgjobd`) when it is
alone in its cgroup.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path
from typing import Final

SWITCH_ENV: Final = "BGJOBS_CGROUPS"
"""`BGJOBS_CGROUPS=off` in the daemon's environment: no cgroups, the subreaper alone."""
SUBTREE_PREFIX: Final = "bgjobs-"
WORKER_PREFIX: Final = "worker-"
SELF_LEAF: Final = "bgjobd"
EMPTY_WAIT: Final = 5.0
"""How long removing a killed cgroup waits for its processes to finish dying."""


def cgroup2_mount(mountinfo: str | None = None) -> Path | None:
    """Where the cgroup v2 hierarchy is mounted (`/sys/fs/cgroup`, or `.../unified` on a
    hybrid host), or None."""
    try:
        text = mountinfo if mountinfo is not None else Path("/proc/self/mountinfo").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        before, sep, after = line.partition(" - ")
        if sep and after.split()[:1] == ["cgroup2"]:
            return Path(before.split()[4])
    return None


def own_cgroup(pid: int | str = "self") -> str | None:
    """The cgroup v2 path of a process (`0::/path` in /proc/PID/cgroup), or None."""
    try:
        text = Path(f"/proc/{pid}/cgroup").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("0::"):
            return line[3:]
    return None


def _start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[19]


def _write(path: Path, text: str) -> bool:
    try:
        path.write_text(text)
    except OSError:
        return False
    return True


class Cgroup:
    """One worker's leaf."""

    def __init__(self, path: Path, *, memory: bool) -> None:
        self.path = path
        self.memory = memory
        """The memory controller is on here: `memory.max` limits the worker."""

    def pids(self) -> list[int]:
        with contextlib.suppress(OSError, ValueError):
            return [int(pid) for pid in (self.path / "cgroup.procs").read_text().split()]
        return []

    def populated(self) -> bool:
        try:
            events = (self.path / "cgroup.events").read_text()
        except OSError:
            return False
        return "populated 1" in events

    def kill(self) -> None:
        """SIGKILL every process in it (cgroup.kill, or one by one on older kernels)."""
        if _write(self.path / "cgroup.kill", "1"):
            return
        for _ in range(10):  # a process may fork while we go through the list
            pids = self.pids()
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)

    def remove(self) -> bool:
        """rmdir it; False while processes remain (dying ones take a moment)."""
        try:
            self.path.rmdir()
        except FileNotFoundError:
            return True
        except OSError:
            return False
        return True

    def set_memory_max(self, limit: int | None) -> None:
        """Limit the leaf's memory; the OOM killer then takes the whole leaf at once (the
        worker included), so the attempt ends as over its limit, not half-killed."""
        if self.memory:
            _write(self.path / "memory.oom.group", "1")
            _write(self.path / "memory.max", "max" if limit is None else str(limit))

    def oom_kills(self) -> int:
        """How many processes the OOM killer took in it so far."""
        with contextlib.suppress(OSError):
            for line in (self.path / "memory.events").read_text().splitlines():
                name, _, count = line.partition(" ")
                if name == "oom_kill":
                    return int(count)
        return 0


class CgroupTree:
    """This process's subtree: one leaf per worker."""

    def __init__(self, path: Path, *, memory: bool) -> None:
        self.path = path
        self.memory = memory

    @classmethod
    def create(cls) -> CgroupTree | None:
        """Make this process's subtree, after clearing those of owners that are gone; None
        where cgroup v2 is missing or the process's cgroup is not writable."""
        if os.environ.get(SWITCH_ENV, "").lower() in ("0", "off", "no"):
            return None
        mount = cgroup2_mount()
        relative = own_cgroup()
        if mount is None or relative is None:
            return None
        own = mount / relative.lstrip("/")
        if not os.access(own / "cgroup.procs", os.W_OK) or not os.access(own, os.W_OK):
            return None
        remove_stale(own)
        me = os.getpid()
        path = own / f"{SUBTREE_PREFIX}{me}-{_start_time(me)}"
        try:
            path.mkdir()
        except OSError:
            return None
        return cls(path, memory=_enable_memory(own, path, root=own == mount))

    def place(self, pid: int) -> Cgroup | None:
        """Move a new worker into a leaf of its own (before it runs any job code)."""
        leaf = Cgroup(self.path / f"{WORKER_PREFIX}{pid}", memory=self.memory)
        try:
            leaf.path.mkdir()
        except OSError:
            return None
        if not _write(leaf.path / "cgroup.procs", str(pid)):
            leaf.remove()
            return None
        return leaf

    def remove(self) -> None:
        """Kill whatever is left in the leaves and remove the whole subtree."""
        _remove_subtree(self.path)


def remove_stale(own: Path) -> list[Path]:
    """Kill and remove the subtrees under `own` whose owner no longer runs."""
    removed = []
    for subtree in own.glob(f"{SUBTREE_PREFIX}*-*"):
        pid, _, started = subtree.name.removeprefix(SUBTREE_PREFIX).partition("-")
        if pid.isdigit() and _start_time(int(pid)) == started:
            continue
        _remove_subtree(subtree)
        removed.append(subtree)
    return removed


def _remove_subtree(path: Path) -> None:
    leaves = [Cgroup(leaf, memory=False) for leaf in path.glob(f"{WORKER_PREFIX}*")]
    for leaf in leaves:
        leaf.kill()
    deadline = time.monotonic() + EMPTY_WAIT
    for leaf in leaves:
        while not leaf.remove() and time.monotonic() < deadline:
            time.sleep(0.01)
    with contextlib.suppress(OSError):
        path.rmdir()


def _enable_memory(own: Path, subtree: Path, *, root: bool) -> bool:
    """Turn the memory controller on for the workers' leaves, if the tree offers it."""
    try:
        available = (own / "cgroup.controllers").read_text().split()
        enabled = (own / "cgroup.subtree_control").read_text().split()
    except OSError:
        return False
    if "memory" not in available:
        return False
    if "memory" not in enabled and not _write(own / "cgroup.subtree_control", "+memory"):
        if root or not _leave_for_leaf(own):
            return False
        if not _write(own / "cgroup.subtree_control", "+memory"):
            return False
    return _write(subtree / "cgroup.subtree_control", "+memory")


def _leave_for_leaf(own: Path) -> bool:
    """Move this process into `own/bgjobd`, when it is alone in `own` (a delegated service
    cgroup), so that `own` may hand controllers down."""
    try:
        if (own / "cgroup.procs").read_text().split() != [str(os.getpid())]:
            return False
        (own / SELF_LEAF).mkdir(exist_ok=True)
    except OSError:
        return False
    return _write(own / SELF_LEAF / "cgroup.procs", str(os.getpid()))


def kill_own_leaf() -> bool:
    """From inside a worker: kill every process in its own leaf (itself included). False
    when it is not in a worker leaf (no cgroups here), so the caller falls back."""
    mount = cgroup2_mount()
    relative = own_cgroup()
    if mount is None or relative is None:
        return False
    path = mount / relative.lstrip("/")
    if not path.name.startswith(WORKER_PREFIX) or not path.parent.name.startswith(SUBTREE_PREFIX):
        return False
    Cgroup(path, memory=False).kill()
    return True
