"""The filter of `cancel` and `retry` for many jobs at once, and its confirmation: the
matching jobs are counted first, and changed only once the user said yes (on a terminal)
or gave `--yes` (a script)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Collection

from bgjobctl.context import CommandContext
from bgjobs.errors import BgjobsError, ExitCode, UsageError
from bgjobs.model import JobState


class Declined(BgjobsError):
    """The user answered no: nothing was changed."""

    exit_code = ExitCode.FAILED


def add_filter_arguments(parser: argparse.ArgumentParser, states: Collection[JobState]) -> None:
    parser.add_argument(
        "--state",
        action="append",
        choices=[s.value for s in JobState if s in states],
        help="only jobs in this state (repeatable)",
    )
    parser.add_argument("--class", dest="class_name", metavar="CLASS", help="only this class")
    parser.add_argument("--queue", metavar="QUEUE", help="only jobs of this queue")
    parser.add_argument("--search", metavar="TEXT", help="only jobs whose params hold TEXT")
    parser.add_argument(
        "--yes", "-y", action="store_true", help="do it without asking (needed off a terminal)"
    )


def has_filter(args: argparse.Namespace) -> bool:
    return bool(args.state or args.class_name or args.queue or args.search)


def states_of(args: argparse.Namespace, default: Collection[JobState]) -> list[JobState]:
    return [JobState(state) for state in args.state] if args.state else sorted(default)


def confirm(ctx: CommandContext, verb: str, states: list[JobState]) -> int:
    """How many jobs match, once the user agreed to `verb` them (0: nothing to ask)."""
    args = ctx.args
    matching = ctx.client.list_jobs(
        states=states, class_name=args.class_name, search=args.search, queue=args.queue, limit=1
    ).total
    if matching == 0 or args.yes:
        return matching
    question = f"{verb} {matching} matching job(s) ({describe(args, states)})?"
    if not sys.stdin.isatty():
        raise UsageError(f"{question} Nothing done: add --yes to {verb} them")
    sys.stderr.write(f"{question} [y/N] ")
    sys.stderr.flush()
    if sys.stdin.readline().strip().lower() not in ("y", "yes"):
        raise Declined(f"nothing {verb_past(verb)}")
    return matching


def describe(args: argparse.Namespace, states: list[JobState]) -> str:
    parts = ["/".join(state.value for state in states)]
    if args.class_name:
        parts.append(f"class {args.class_name}")
    if args.queue:
        parts.append(f"queue {args.queue}")
    if args.search:
        parts.append(f"params holding {args.search!r}")
    return ", ".join(parts)


def verb_past(verb: str) -> str:
    return {"cancel": "cancelled", "retry": "retried"}.get(verb, verb + "ed")
