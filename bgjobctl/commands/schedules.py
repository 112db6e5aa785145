from __future__ import annotations

import argparse

from bgjobctl.context import CommandContext
from bgjobs.errors import ExitCode

HELP = "the cron schedules, with their next and last run"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(ctx: CommandContext) -> int:
    schedules = ctx.client.schedules()
    if ctx.json:
        ctx.print_json(schedules)
        return ExitCode.OK
    from bgjobctl.render import print_table, safe, when

    print_table(
        ("NAME", "CRON", "TIMEZONE", "JOB", "MISSED", "NEXT RUN", "LAST RUN"),
        [
            (
                safe(s.name),
                safe(s.cron),
                safe(s.timezone),
                safe(f"{s.class_name}::{s.method}"),
                s.missed,
                when(s.next_run),
                when(s.last_run),
            )
            for s in schedules
        ],
        title="schedules",
    )
    return ExitCode.OK
