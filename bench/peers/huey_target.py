"""Huey 3.x under test: its consumer (`huey_consumer ... -w 2 -k process`) started as a
process of its own, and tasks enqueued from this process through the same application."""

from __future__ import annotations

import contextlib
import importlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from bench import procs


class HueyConsumer:
    """The consumer process: 2 worker processes, plus its scheduler process."""

    def __init__(self, workdir: Path, spec: str, name: str, *, workers: int) -> None:
        self.log_path = workdir / f"huey-{spec.partition(':')[0]}.log"
        self.env = procs.child_env({"BENCH_HUEY": spec, "BENCH_HUEY_NAME": name})
        self.started = time.perf_counter()
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "huey.bin.huey_consumer",
                "bench.peers.huey_app.huey",
                "--workers",
                str(workers),
                "--worker-type",
                "process",
                "--logfile",
                str(self.log_path),
                "--quiet",
            ],
            cwd=workdir,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def tail(self, lines: int = 15) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self) -> float | None:
        # SIGINT is Huey's graceful stop; SIGTERM would interrupt running tasks.
        return procs.stop_process(self.process, signal.SIGINT, timeout=20)


def load_app(spec: str, name: str) -> ModuleType:
    """The application module, built for this storage in this (the client's) process."""
    os.environ["BENCH_HUEY"] = spec
    os.environ["BENCH_HUEY_NAME"] = name
    module = sys.modules.get("bench.peers.huey_app")
    if module is None:
        return importlib.import_module("bench.peers.huey_app")
    return importlib.reload(module)


class HueyTarget:
    def __init__(self, name: str, consumer: HueyConsumer, app: ModuleType) -> None:
        self.name = name
        self.consumer = consumer
        self.app = app
        self.huey: Any = app.huey

    def root_pid(self) -> int:
        return self.consumer.process.pid

    def roles(self) -> dict[str, list[int]]:
        pid = self.consumer.process.pid
        return {"consumer": [pid], "workers+scheduler": procs.tree(pid)[1:]}

    def noop(self) -> None:
        self.app.noop()

    def incr(self, key: str) -> None:
        self.app.incr(key)

    def late(self, path: str, due: float, delay: float) -> None:
        self.app.late.schedule(args=(path, due), delay=delay)

    def sleep_incr(self, seconds: float, key: str) -> None:
        self.app.sleep_incr(seconds, key)

    def stop(self) -> float | None:
        return self.consumer.stop()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.huey.storage.flush_all()
        with contextlib.suppress(Exception):
            self.huey.storage.close()
