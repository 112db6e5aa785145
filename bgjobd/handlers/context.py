"""What a request handler may use: the queue's service, and its own connection's means
to stream."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from bgjobd.service import QueueService
from bgjobs.protocol import Reply


@dataclass
class Context:
    service: QueueService
    send: Callable[[Reply], None]
    """Send an extra message on this connection (subscriptions stream through it)."""
    subscriptions: list[int] = field(default_factory=list)

    def detach(self) -> None:
        """The connection is gone: drop the way back to it (and its subscriptions), so that
        whoever still holds this context (a request being handled) does not keep the
        connection's buffers."""
        for token in self.subscriptions:
            self.service.unsubscribe(token)
        self.subscriptions.clear()
        self.send = _discard


def _discard(reply: Reply) -> None:
    pass
