"""The daemon's orphans: processes that a killed worker's job left behind.

The daemon is a child subreaper, so when a worker dies, whatever it had not yet killed
(its descendants, even in other sessions) becomes the daemon's children instead of init's.
A sweep after each worker exit kills each of them with everything below it, and reaps them
as they die (a pidfd tells when, without blocking the loop). The daemon's own workers are
left alone: their exit belongs to asyncio.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable, Collection

from bgjobd import containment


class Orphans:
    def __init__(self, workers: Callable[[], Collection[int] | None]) -> None:
        self._workers = workers
        """The pids of the live workers, or None while one is being started (its pid not
        known yet, so no child can be told to be an orphan)."""
        self.enabled = False
        self._pending = False
        self._watching: dict[int, int] = {}
        self._own: set[int] = set()
        """Children from before `start`: not a worker's orphans."""

    def start(self) -> None:
        """Become a subreaper (before the first worker starts). The children this process
        has already are its own (the engine may run inside another program, e.g. a test
        run with its multiprocessing helper): never orphans of a worker."""
        self.enabled = self.enabled or containment.become_subreaper()
        self._own = set(containment.children(os.getpid()))

    def sweep(self) -> None:
        """Kill and reap every child that is not a worker (and what is below it)."""
        if not self.enabled:
            return
        workers = self._workers()
        self._pending = workers is None
        if workers is None:
            return
        for pid in containment.children(os.getpid()):
            if pid in workers or pid in self._watching or pid in self._own:
                continue
            for below in containment.descendants(pid):
                containment.kill(below)
            containment.kill(pid)
            self._reap_when_dead(pid)

    def sweep_if_pending(self) -> None:
        if self._pending:
            self.sweep()

    def _reap_when_dead(self, pid: int) -> None:
        try:
            fd = os.pidfd_open(pid)
        except (OSError, AttributeError):  # gone already, or a kernel before 5.3
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)  # it was sent SIGKILL: this is brief
            return
        loop = asyncio.get_running_loop()
        self._watching[pid] = fd

        def reap() -> None:
            loop.remove_reader(fd)
            os.close(fd)
            del self._watching[pid]
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            self.sweep()  # its own children came to the daemon as it died

        loop.add_reader(fd, reap)

    def close(self) -> None:
        loop = asyncio.get_running_loop()
        for pid, fd in list(self._watching.items()):
            loop.remove_reader(fd)
            os.close(fd)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        self._watching.clear()
