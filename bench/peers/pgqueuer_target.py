"""pgqueuer under test: installed (`pgq install`) into a private PostgreSQL schema, one
consumer process (`pgqueuer.run(..., batch_size=1, max_concurrent_tasks=2)`: 2-way
concurrency, as measured in peer-benchmarks.md), jobs enqueued from this process one
`SyncQueries.enqueue()` call at a time (psycopg, autocommit); delays with `execute_after`."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench import procs
from bench.peers import pgbase
from bench.peers.processes import PeerProcesses


def _pgq(*args: str) -> list[str]:
    return [sys.executable, "-m", "pgqueuer", *args]


class PgqueuerTarget:
    def __init__(self, workdir: Path, name: str = "pgqueuer") -> None:
        import psycopg
        from pgqueuer.adapters.drivers.psycopg import SyncPsycopgDriver
        from pgqueuer.adapters.persistence.qb import DBSettings, QueryQueueBuilder
        from pgqueuer.queries import SyncQueries

        self.name = name
        self.schema = pgbase.fresh_schema("pgqueuer")
        self.consumer: PeerProcesses | None = None
        self._db: Any = None
        try:
            env = {"PGDSN": pgbase.DSN, "PGQUEUER_SCHEMA": self.schema}
            subprocess.run(
                _pgq("install"),
                env=procs.child_env(env),
                cwd=workdir,
                check=True,
                capture_output=True,
                timeout=60,
            )
            self.consumer = PeerProcesses(
                workdir,
                "pgqueuer",
                [[sys.executable, "-m", "bench.peers.pgqueuer_app"]],
                env,
            )
            self._db = psycopg.connect(pgbase.DSN, autocommit=True)
            builder = QueryQueueBuilder(DBSettings(db_schema=self.schema))
            self.queries = SyncQueries(SyncPsycopgDriver(self._db), qbq=builder)
        except subprocess.CalledProcessError as exc:
            self.close()
            raise RuntimeError(f"pgq install failed: {exc.stderr.decode()[-500:]}") from None
        except BaseException:
            self.close()
            raise

    def root_pid(self) -> int:
        assert self.consumer is not None
        return self.consumer.processes[0].pid

    def roles(self) -> dict[str, list[int]]:
        assert self.consumer is not None
        return {"consumer": self.consumer.pids()}

    def _enqueue(self, entrypoint: str, params: list[object], delay: float = 0) -> None:
        after = timedelta(seconds=delay) if delay else None
        self.queries.enqueue(entrypoint, json.dumps(params).encode(), 0, after)

    def noop(self) -> None:
        self._enqueue("noop", [])

    def incr(self, key: str) -> None:
        self._enqueue("incr", [key])

    def late(self, path: str, due: float, delay: float) -> None:
        self._enqueue("late", [path, due], delay)

    def sleep_incr(self, seconds: float, key: str) -> None:
        self._enqueue("sleep_incr", [seconds, key])

    def bulk_noop(self, count: int) -> None:
        """`count` no-op jobs due in an hour, 1,000 per enqueue call (its batch insert, the
        size of a bgjobs batch)."""
        for start in range(0, count, 1000):
            size = min(1000, count - start)
            later: list[timedelta | None] = [timedelta(hours=1)] * size
            self.queries.enqueue(["noop"] * size, [b"[]"] * size, [0] * size, later)

    def stop(self) -> float | None:
        # SIGINT: its graceful stop here (after SIGTERM it still waited out its dequeue timeout).
        return None if self.consumer is None else self.consumer.stop(signal.SIGINT)

    def close(self) -> None:
        if self.consumer is not None:
            self.consumer.stop()
        if self._db is not None:
            self._db.close()
        pgbase.drop_schema(self.schema)
