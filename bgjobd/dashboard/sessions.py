"""Logins kept in the daemon's memory: random session ids and the nonces of one-time login links.

Nothing is derived from the token, so a session ends for good when its user logs out, and
every session ends when the daemon restarts.
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Final

SESSION_SECONDS: Final = 12 * 3600.0
"""A login lasts at most this long."""
NONCE_SECONDS: Final = 60.0
"""A one-time login link (`bgjobctl dashboard`) must be opened within this long."""
MAX_SESSIONS: Final = 1000
"""The oldest sessions are dropped beyond this many (a bound on memory, not a limit anyone
reaches by using the dashboard)."""


class _Expiring:
    """Random ids, each valid until its deadline; the oldest go first beyond `limit`."""

    def __init__(self, lifetime: float, limit: int, clock: Callable[[], float]) -> None:
        self._lifetime = lifetime
        self._limit = limit
        self._clock = clock
        self._deadlines: OrderedDict[str, float] = OrderedDict()

    def new(self) -> str:
        value = secrets.token_urlsafe(32)
        self._deadlines[value] = self._clock() + self._lifetime
        while len(self._deadlines) > self._limit:
            self._deadlines.popitem(last=False)
        return value

    def valid(self, value: str | None) -> bool:
        if not value:
            return False
        deadline = self._deadlines.get(value)
        if deadline is None:
            return False
        if deadline < self._clock():
            del self._deadlines[value]
            return False
        return True

    def end(self, value: str | None) -> None:
        if value:
            self._deadlines.pop(value, None)


class Logins:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.sessions = _Expiring(SESSION_SECONDS, MAX_SESSIONS, clock)
        self._nonces = _Expiring(NONCE_SECONDS, MAX_SESSIONS, clock)

    def new_nonce(self) -> str:
        return self._nonces.new()

    def redeem(self, nonce: str) -> bool:
        """True once per nonce this daemon issued, within its lifetime."""
        valid = self._nonces.valid(nonce)
        self._nonces.end(nonce)
        return valid
