"""What a request handler may use: the engine, and its own connection's means to stream."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from bgjobd.engine import Engine
from bgjobs.protocol import Reply


@dataclass
class Context:
    engine: Engine
    started_at: float
    send: Callable[[Reply], None]
    """Send an extra message on this connection (subscriptions stream through it)."""
    subscriptions: list[int] = field(default_factory=list)
