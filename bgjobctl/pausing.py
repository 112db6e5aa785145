"""What `pause` and `resume` share: which pause (`--class`, `--queue` or `--all`), and how
the pauses in force are printed (by them and by `stats`)."""

from __future__ import annotations

import argparse

from bgjobctl.context import CommandContext
from bgjobs.errors import ExitCode, UsageError
from bgjobs.model import PauseInfo, PauseKind


def add_arguments(parser: argparse.ArgumentParser) -> None:
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--class", dest="class_name", metavar="CLASS", help="one job class")
    which.add_argument("--queue", metavar="QUEUE", help="one queue")
    which.add_argument("--all", action="store_true", help="every job")


def target(args: argparse.Namespace) -> tuple[PauseKind, str]:
    if args.all:
        return PauseKind.ALL, ""
    if args.class_name is not None:
        name, kind = args.class_name, PauseKind.CLASS
    else:
        name, kind = args.queue, PauseKind.QUEUE
    if not name:
        raise UsageError(f"--{kind.value} needs a name")
    return kind, name


def run(ctx: CommandContext, *, resume: bool) -> int:
    kind, name = target(ctx.args)
    reply = ctx.client.pause(kind, name, resume=resume)
    if ctx.json:
        ctx.print_json({"changed": reply.changed, "paused": reply.paused})
        return ExitCode.OK
    label = "all jobs" if kind is PauseKind.ALL else f"{kind.value} {name}"
    if resume:
        ctx.print(f"resumed {label}" if reply.changed else f"{label} was not paused")
    else:
        ctx.print(f"paused {label}" if reply.changed else f"{label} was paused already")
    ctx.print(summary(reply.paused))
    return ExitCode.OK


def summary(pauses: list[PauseInfo]) -> str:
    if not pauses:
        return "paused: nothing"
    return "paused: " + ", ".join(pause.label for pause in pauses)
