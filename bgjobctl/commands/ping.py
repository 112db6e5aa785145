from __future__ import annotations

import argparse
import time

from bgjobctl.context import CommandContext
from bgjobs.errors import ExitCode

HELP = "check that the daemon answers"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(ctx: CommandContext) -> int:
    started = time.perf_counter()
    ctx.client.ping()
    elapsed = (time.perf_counter() - started) * 1e6
    if ctx.json:
        ctx.print_json({"ok": True, "address": ctx.client.address.describe(), "us": elapsed})
    else:
        ctx.print(f"bgjobd answers on {ctx.client.address.describe()} ({elapsed:.0f} µs)")
    return ExitCode.OK
