from __future__ import annotations

import argparse

from bgjobctl.arguments import job_id
from bgjobctl.context import CommandContext
from bgjobs.errors import ExitCode

HELP = "cancel a job: a waiting one never runs, a running one is killed"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("job_id", metavar="ID", type=job_id)


def run(ctx: CommandContext) -> int:
    job = ctx.client.cancel(ctx.args.job_id)
    if ctx.json:
        ctx.print_json(job)
    else:
        ctx.print(f"job {job.id} {job.state.value}")
    return ExitCode.OK
