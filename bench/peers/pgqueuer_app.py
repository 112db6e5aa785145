"""The pgqueuer application of the benchmark: `pgq run bench.peers.pgqueuer_app:create`.

Its connection string is `$PGDSN` and its objects live in `$PGQUEUER_SCHEMA` (pgqueuer's
own settings), so the consumer and the benchmark's client use the same queue. pgqueuer runs
async entrypoints only: each calls the same job classes as bgjobs' workers (bench/jobs) in
`asyncio.to_thread`, as its error message asks for blocking bodies. The payload is JSON."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from pgqueuer import PgQueuer
from pgqueuer.models import Job

from bench.jobs import Incr, Late, Noop, SleepIncr


def _params(job: Job) -> list[Any]:
    return list(json.loads(job.payload or b"[]"))


def register(pgq: PgQueuer) -> None:
    @pgq.entrypoint("noop")
    async def noop(job: Job) -> None:
        await asyncio.to_thread(Noop().handle)

    @pgq.entrypoint("incr")
    async def incr(job: Job) -> None:
        await asyncio.to_thread(Incr().handle, *_params(job))

    @pgq.entrypoint("late")
    async def late(job: Job) -> None:
        await asyncio.to_thread(Late().handle, *_params(job))

    @pgq.entrypoint("sleep_incr")
    async def sleep_incr(job: Job) -> None:
        await asyncio.to_thread(SleepIncr().handle, *_params(job))


@asynccontextmanager
async def create() -> AsyncIterator[PgQueuer]:
    connection = await asyncpg.connect(dsn=os.environ["PGDSN"])
    try:
        pgq = PgQueuer.from_asyncpg_connection(connection)
        register(pgq)
        yield pgq
    finally:
        await connection.close()


def main() -> None:
    """The consumer, as `pgq run bench.peers.pgqueuer_app:create --batch-size 1
    --max-concurrent-tasks 2` would start it: pgqueuer 1.6.0's `pgq run` fails at start
    here (its `--log-level` option reaches the logger as a str), so its own `run()`."""
    import pgqueuer

    asyncio.run(pgqueuer.run(create, batch_size=1, max_concurrent_tasks=2))


if __name__ == "__main__":
    main()
