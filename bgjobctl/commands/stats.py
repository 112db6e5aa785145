from __future__ import annotations

import argparse

from bgjobctl.context import CommandContext
from bgjobs.errors import ExitCode

HELP = "counts per state, throughput, queues and workers"


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
    print_table(
        ("PID", "BUSY WITH", "ATTEMPTS RUN", "STARTED"),
        [
            (str(w.pid), str(w.busy_with or "-"), str(w.attempts_run), when(w.started_at))
            for w in stats.workers
        ],
        title="workers",
    )
    return ExitCode.OK
