from __future__ import annotations

import argparse
from datetime import UTC, datetime

from bgjobctl.context import CommandContext
from bgjobs.errors import ExitCode
from bgjobs.model import RateStats

HELP = "counts per state, throughput, queues, pauses, rate limits and workers"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(ctx: CommandContext) -> int:
    stats = ctx.client.stats()
    if ctx.json:
        ctx.print_json(stats)
        return ExitCode.OK
    from bgjobctl.render import print_table, when

    print_table(
        ("STATE", "JOBS"), [(state, str(n)) for state, n in stats.counts.items()], title="jobs"
    )
    ctx.print(
        f"jobs finished in the last minute: {stats.finished_last_minute} "
        f"({stats.throughput_per_second:.2f}/s); daemon pid {stats.daemon_pid}, "
        f"up {stats.uptime:.0f}s"
    )
    from bgjobctl.pausing import summary

    ctx.print(summary(stats.paused))
    print_table(
        ("QUEUE", "WORKERS", "BUSY", "QUEUED"),
        [(q.name, str(q.workers), str(q.busy), str(q.queued)) for q in stats.queues],
        title="queues (workers of this node; queued on every node)",
    )
    if stats.rates:
        print_table(
            ("CLASS", "RATE", "STARTED", "AT RATE", "HELD", "NEXT START"),
            [rate_row(rate) for rate in stats.rates],
            title="rate limits (starts in the window now, on every node)",
        )
    print_table(
        ("PID", "BUSY WITH", "ATTEMPTS RUN", "STARTED"),
        [
            (str(w.pid), str(w.busy_with or "-"), str(w.attempts_run), when(w.started_at))
            for w in stats.workers
        ],
        title="workers",
    )
    return ExitCode.OK


def rate_row(rate: RateStats) -> tuple[str, ...]:
    from bgjobs.ratetext import next_text, rate_text, started_text

    return (
        rate.class_name,
        rate_text(rate),
        started_text(rate),
        str(rate.full),
        str(rate.held),
        next_text(rate, datetime.now(UTC)),
    )
