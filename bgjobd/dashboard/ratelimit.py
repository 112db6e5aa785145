"""Slowing down token guesses: after a few failures from one client address, every further
try waits for a delay that doubles with each failure (answered 429 until then).

Success does not clear the count (on a shared host every local user is 127.0.0.1, and a
script's successful logins must not buy an attacker fresh tries); failures are forgotten
after a quiet while instead. One-time login links are not limited: they cannot be guessed,
so `bgjobctl dashboard` still logs its user in while someone hammers the login form.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

FREE_FAILURES: Final = 5
FIRST_DELAY: Final = 1.0
MAX_DELAY: Final = 300.0
FORGET_AFTER: Final = 900.0
"""Seconds after a client's last failure when its count starts again from zero."""
MAX_CLIENTS: Final = 10_000


@dataclass
class _Failures:
    count: int
    last: float
    locked_until: float


class LoginLimiter:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._clients: OrderedDict[str, _Failures] = OrderedDict()

    def retry_after(self, client: str) -> float | None:
        """Seconds before this client may try a token again; None: it may now."""
        record = self._current(client)
        if record is None:
            return None
        wait = record.locked_until - self._clock()
        return wait if wait > 0 else None

    def failed(self, client: str) -> None:
        now = self._clock()
        record = self._current(client) or _Failures(count=0, last=now, locked_until=0.0)
        record.count += 1
        record.last = now
        if record.count >= FREE_FAILURES:
            delay = FIRST_DELAY * 2 ** (record.count - FREE_FAILURES)
            record.locked_until = now + min(MAX_DELAY, delay)
        self._clients[client] = record
        self._clients.move_to_end(client)
        while len(self._clients) > MAX_CLIENTS:
            self._clients.popitem(last=False)

    def _current(self, client: str) -> _Failures | None:
        record = self._clients.get(client)
        if record is not None and self._clock() - record.last > FORGET_AFTER + MAX_DELAY:
            del self._clients[client]
            return None
        return record
