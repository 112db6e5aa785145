from __future__ import annotations

from bgjobs.protocol import Ping, Pong


def handle(request: Ping) -> Pong:
    return Pong(rid=request.rid)
