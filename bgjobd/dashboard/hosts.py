"""Which names a request may give for the dashboard (`Host`, or an absolute-form target).

Exactly `NAME:PORT` for the configured listen address or a loopback name, with the port the
dashboard listens on: a web page whose DNS name was rebound to 127.0.0.1 names its own host,
and `127.0.0.1:PORT@evil.example` or `GET http://evil.example/` name another one. With a
wildcard listen address (0.0.0.0, ::) the machine's names are not known: any plain name is
taken (the login still stands in the way).
"""

from __future__ import annotations

import re
from typing import Final

LOOPBACK_NAMES: Final = frozenset({"localhost", "127.0.0.1", "::1"})
WILDCARDS: Final = frozenset({"0.0.0.0", "::", ""})  # noqa: S104  # recognised, not bound
_AUTHORITY: Final = re.compile(
    r"(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<name>[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?))"
    r"(?::(?P<port>[0-9]{1,5}))?"
)


class HostCheck:
    def __init__(self, listen_host: str, port: int) -> None:
        self.port = port
        self._any_name = listen_host in WILDCARDS
        self._names = LOOPBACK_NAMES | {listen_host.lower()}

    def allows(self, authority: str) -> bool:
        """Whether `authority` (a Host header's value) names this dashboard."""
        parsed = split_authority(authority)
        if parsed is None:
            return False
        name, port = parsed
        if (port if port is not None else 80) != self.port:
            return False
        return self._any_name or name.lower() in self._names


def split_authority(authority: str) -> tuple[str, int | None] | None:
    """`name[:port]` or `[v6][:port]` as (name, port); None for anything else (userinfo,
    a path, spaces, a bad port)."""
    match = _AUTHORITY.fullmatch(authority)
    if match is None:
        return None
    port = None if match["port"] is None else int(match["port"])
    if port is not None and port > 65535:
        return None
    return match["v6"] or match["name"], port
