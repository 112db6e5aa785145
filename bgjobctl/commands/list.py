from __future__ import annotations

import argparse

from bgjobctl.context import CommandContext
from bgjobs.errors import ExitCode, UsageError
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
    parser.add_argument("--search", metavar="TEXT", help="a job id, or text in the params")
    parser.add_argument("--limit", type=int, default=50)
    parser.add_argument("--offset", type=int, default=0)


def run(ctx: CommandContext) -> int:
    args = ctx.args
    for name in ("limit", "offset"):  # the daemon says which range; this, what the wire holds
        if not 0 <= getattr(args, name) < 2**63:
            raise UsageError(f"--{name} must be a whole number from 0, not {getattr(args, name)}")
    listing = ctx.client.list_jobs(
        states=[JobState(state) for state in args.state or []],
        class_name=args.class_name,
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
