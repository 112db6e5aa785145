from __future__ import annotations

import argparse

from bgjobctl.arguments import count
from bgjobctl.context import CommandContext
from bgjobs.errors import ExitCode
from bgjobs.model import JobState

HELP = "list jobs, newest first"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--state",
        action="append",
        choices=[s.value for s in JobState],
        help="only jobs in this state (repeatable)",
    )
    parser.add_argument("--class", dest="class_name", metavar="CLASS")
    parser.add_argument("--queue", metavar="QUEUE", help="only jobs of this named queue")
    parser.add_argument("--search", metavar="TEXT", help="a job id, or text in the params")
    parser.add_argument("--limit", type=count, default=50)
    parser.add_argument("--offset", type=count, default=0)


def run(ctx: CommandContext) -> int:
    args = ctx.args
    listing = ctx.client.list_jobs(
        states=[JobState(state) for state in args.state or []],
        class_name=args.class_name,
        queue=args.queue,
        search=args.search,
        limit=args.limit,
        offset=args.offset,
    )
    if ctx.json:
        ctx.print_json({"jobs": listing.jobs, "total": listing.total})
    else:
        from bgjobctl.render import print_jobs

        print_jobs(listing.jobs, listing.total)
    return ExitCode.OK
