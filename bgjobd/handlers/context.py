"""What a request handler may use: the engine, and its own connection's means to stream."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from bgjobd.engine import Engine
from bgjobd.ops import Ops
from bgjobs.protocol import Reply


@dataclass
class Context:
    engine: Engine
    started_at: float
    send: Callable[[Reply], None]
    """Send an extra message on this connection (subscriptions stream through it)."""
    subscriptions: list[int] = field(default_factory=list)
    ops: Ops | None = None
    """Schedules and retention (None in a daemon without them)."""

    def detach(self) -> None:
        """The connection is gone: drop the way back to it, so that whoever still holds
        this context (a request being handled) does not keep the connection's buffers."""
        self.send = _discard
        self.subscriptions.clear()


def _discard(reply: Reply) -> None:
    pass
