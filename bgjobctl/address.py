"""Where the daemon listens, found the way the daemon finds it: `--socket` or
`$BGJOBS_SOCKET`, else the configuration (`--config`, `$BGJOBS_CONFIG`, `./bgjobs.toml`, ...)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from bgjobs.config import SOCKET_ENV, Config, load_config


@dataclass(frozen=True)
class Address:
    unix_path: Path | None = None
    host: str = "127.0.0.1"
    port: int = 0
    token_path: Path | None = None

    def describe(self) -> str:
        return str(self.unix_path) if self.unix_path else f"{self.host}:{self.port}"

    def read_token(self) -> str | None:
        if self.token_path is None:
            return None
        try:
            return self.token_path.read_text().strip()
        except OSError:
            return None


def address_of(config: Config) -> Address:
    daemon = config.settings.daemon
    if daemon.transport == "tcp":
        host, _, port = daemon.listen.rpartition(":")
        return Address(
            host=host.strip("[]") or "127.0.0.1",
            port=int(port) if port.isdigit() else 0,
            token_path=config.token_path,
        )
    return Address(unix_path=config.socket_path)


def resolve_address(
    config_path: str | None = None, socket_path: str | None = None
) -> tuple[Address, Config]:
    """The daemon's address and the configuration it came from (or sits beside)."""
    config = load_config(config_path)
    named = socket_path or os.environ.get(SOCKET_ENV)
    if named:
        return Address(unix_path=Path(named).expanduser()), config
    return address_of(config), config
