from __future__ import annotations

import argparse

from bgjobctl.context import CommandContext
from bgjobs.errors import ExitCode

HELP = "delete now the finished jobs that [retention] lets go"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dry-run", action="store_true", help="only say what would be removed")


def run(ctx: CommandContext) -> int:
    pruned = ctx.client.prune(dry_run=ctx.args.dry_run)
    if ctx.json:
        ctx.print_json(pruned)
        return ExitCode.OK
    states = ", ".join(f"{n} {state}" for state, n in sorted(pruned.jobs.items())) or "none"
    verb = "would remove" if pruned.dry_run else "removed"
    ctx.print(
        f"{verb} {sum(pruned.jobs.values())} job(s) ({states}), "
        f"{pruned.attempts} earlier attempt(s), {pruned.files} output file(s)"
    )
    return ExitCode.OK
