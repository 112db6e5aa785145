from __future__ import annotations

import argparse

from bgjobctl.context import CommandContext
from bgjobs.errors import ExitCode
from bgjobs.model import NodeInfo
from bgjobs.protocol import NodeList

HELP = "the nodes sharing the queue (daemons, run_job.py runners) and their heartbeats"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(ctx: CommandContext) -> int:
    reply = ctx.client.nodes()
    if ctx.json:
        ctx.print_json({"nodes": reply.nodes, "answered_by": reply.answered_by, "now": reply.now})
        return ExitCode.OK
    from bgjobctl.render import age, print_table

    print_table(
        ("NAME", "HOST", "PID", "ADDRESS", "HEARTBEAT", "WORKERS", ""),
        [
            (
                node.name,
                node.host,
                str(node.pid),
                node.address or "-",
                age((reply.now - node.heartbeat_at).total_seconds()),
                f"{node.workers_busy}/{node.workers_total} busy",
                _remarks(node, reply),
            )
            for node in reply.nodes
        ],
        title=f"{len(reply.nodes)} node(s)",
    )
    return ExitCode.OK


def _remarks(node: NodeInfo, reply: NodeList) -> str:
    notes = []
    if node.name == reply.answered_by:
        notes.append("this node")
    if node.lease_until < reply.now:
        # Dead to the others: a live node expires it and reclaims its running jobs.
        notes.append("lease expired")
    return f"({', '.join(notes)})" if notes else ""
