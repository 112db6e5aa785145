"""procrastinate under test: its schema applied in a private PostgreSQL schema, two worker
processes (`procrastinate worker --concurrency 1` each: 2-way concurrency, as measured in
peer-benchmarks.md; LISTEN/NOTIFY on, the default 5 s polling), jobs deferred from this
process through the same app with its synchronous connector."""

from __future__ import annotations

import importlib
import os
import signal
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from bench.peers import pgbase
from bench.peers.processes import PeerProcesses

WORKER_PROCESSES = 2


def load_app(dsn: str) -> ModuleType:
    """The application module, built for this schema in this (the client's) process."""
    os.environ["BENCH_PROCRASTINATE_DSN"] = dsn
    module = sys.modules.get("bench.peers.procrastinate_app")
    if module is None:
        return importlib.import_module("bench.peers.procrastinate_app")
    return importlib.reload(module)


class ProcrastinateTarget:
    def __init__(self, workdir: Path, name: str = "procrastinate") -> None:
        self.name = name
        self.schema = pgbase.fresh_schema("procrastinate")
        self.workers: PeerProcesses | None = None
        try:
            dsn = pgbase.libpq_dsn(self.schema)
            self.app_module = load_app(dsn)
            self.app: Any = self.app_module.app
            self.app.open()
            self.app.schema_manager.apply_schema()
            command = [
                sys.executable,
                "-m",
                "procrastinate",
                "--app=bench.peers.procrastinate_app.app",
                "worker",
                "--concurrency",
                "1",
            ]
            self.workers = PeerProcesses(
                workdir,
                "procrastinate",
                [command] * WORKER_PROCESSES,
                {"BENCH_PROCRASTINATE_DSN": dsn},
            )
        except BaseException:
            self.close()
            raise

    def root_pid(self) -> int:
        assert self.workers is not None
        return self.workers.processes[0].pid

    def roles(self) -> dict[str, list[int]]:
        assert self.workers is not None
        return {"workers": self.workers.pids()}

    def noop(self) -> None:
        self.app_module.noop.defer()

    def incr(self, key: str) -> None:
        self.app_module.incr.defer(key=key)

    def late(self, path: str, due: float, delay: float) -> None:
        task = self.app_module.late.configure(schedule_in={"seconds": delay})
        task.defer(path=path, due=due)

    def sleep_incr(self, seconds: float, key: str) -> None:
        self.app_module.sleep_incr.defer(seconds=seconds, key=key)

    def bulk_noop(self, count: int) -> None:
        """`count` no-op jobs due in an hour, 1,000 per `batch_defer()` call (one insert
        statement each; the size of a bgjobs batch)."""
        later = self.app_module.noop.configure(schedule_in={"hours": 1})
        for start in range(0, count, 1000):
            later.batch_defer(*([{}] * min(1000, count - start)))

    def stop(self) -> float | None:
        # SIGTERM is procrastinate's graceful stop (it finishes the running jobs).
        return None if self.workers is None else self.workers.stop(signal.SIGTERM)

    def close(self) -> None:
        if self.workers is not None:
            self.workers.stop()
        app = getattr(self, "app", None)
        if app is not None:
            app.close()
        pgbase.drop_schema(self.schema)
