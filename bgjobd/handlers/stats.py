from __future__ import annotations

import os
import time
from datetime import UTC, datetime

from bgjobd.engine import Engine
from bgjobd.handlers.context import Context
from bgjobs.model import Stats, WorkerInfo
from bgjobs.protocol import GetStats, StatsReply


def collect(engine: Engine, started_at: float) -> Stats:
    finished = engine.finished_last_minute()
    return Stats(
        counts={state.value: count for state, count in engine.store.counts().items()},
        finished_last_minute=finished,
        throughput_per_second=finished / 60.0,
        workers=[
            WorkerInfo(
                pid=worker.pid,
                busy_with=worker.busy_with,
                attempts_run=worker.attempts_run,
                started_at=datetime.fromtimestamp(worker.started_at, UTC),
            )
            for worker in engine.attempts.pool.workers
        ],
        uptime=time.time() - started_at,
        daemon_pid=os.getpid(),
    )


def handle(ctx: Context, request: GetStats) -> StatsReply:
    return StatsReply(rid=request.rid, stats=collect(ctx.engine, ctx.started_at))
