from __future__ import annotations

import argparse

from bgjobctl import pausing
from bgjobctl.context import CommandContext

HELP = (
    "stop starting jobs of a class, a queue, or all (on every node); they stay queued and "
    "running ones finish"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pausing.add_arguments(parser)


def run(ctx: CommandContext) -> int:
    return pausing.run(ctx, resume=False)
