from __future__ import annotations

import argparse

from bgjobctl import pausing
from bgjobctl.context import CommandContext

HELP = "start the jobs of a paused class, queue, or all again"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pausing.add_arguments(parser)


def run(ctx: CommandContext) -> int:
    return pausing.run(ctx, resume=True)
