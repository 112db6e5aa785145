"""The Huey application of the benchmark: `huey_consumer bench.peers.huey_app.huey`.

Which storage it uses comes from the environment, so the consumer and the benchmark's
client build the same instance: `BENCH_HUEY=redis` (RedisHuey, blocking dequeue) or
`BENCH_HUEY=sqlite:/path/huey.db` (SqliteHuey, WAL, Huey's defaults otherwise).
The tasks call the same job classes as bgjobs' workers (bench/jobs).
"""

from __future__ import annotations

import os

from huey import Huey, RedisHuey, SqliteHuey  # type: ignore[import-untyped]

from bench.jobs import Incr, Late, Noop, SleepIncr


def make_huey() -> Huey:
    spec = os.environ.get("BENCH_HUEY", "redis")
    name = os.environ.get("BENCH_HUEY_NAME", "bgjobs-bench")
    if spec == "redis":
        return RedisHuey(
            name,
            host=os.environ.get("BENCH_REDIS_HOST", "127.0.0.1"),
            port=int(os.environ.get("BENCH_REDIS_PORT", "6379")),
        )
    kind, _, filename = spec.partition(":")
    if kind != "sqlite" or not filename:
        raise ValueError(f"BENCH_HUEY={spec!r}: expected 'redis' or 'sqlite:/path/huey.db'")
    return SqliteHuey(name, filename=filename)


huey = make_huey()


@huey.task()  # type: ignore[untyped-decorator]
def noop() -> None:
    Noop().handle()


@huey.task()  # type: ignore[untyped-decorator]
def incr(key: str) -> None:
    Incr().handle(key)


@huey.task()  # type: ignore[untyped-decorator]
def late(path: str, due: float) -> None:
    Late().handle(path, due)


@huey.task()  # type: ignore[untyped-decorator]
def sleep_incr(seconds: float, key: str) -> None:
    SleepIncr().handle(seconds, key)
