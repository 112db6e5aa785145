"""`bgjobd`: run the daemon in the foreground, or check the configuration."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Coroutine
from typing import Any

import msgspec

from bgjobs import __version__
from bgjobs.config import Config, load_config
from bgjobs.errors import BgjobsError, ConfigError, ExitCode


def run_loop(main: Coroutine[Any, Any, int]) -> int:
    """Run on uvloop where it is installed (not on Windows), else on asyncio's own loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def describe(config: Config) -> str:
    resolved = {
        "config_file": str(config.path) if config.path else "(none found: built-in defaults)",
        "storage": str(config.storage_dir),
        "database": str(config.database_path),
        "socket": str(config.socket_path)
        if config.settings.daemon.transport == "unix"
        else config.settings.daemon.listen,
        "workers": config.workers,
        "queues": config.queue_workers,
        "settings": msgspec.to_builtins(config.settings),
    }
    return msgspec.json.format(msgspec.json.encode(resolved)).decode()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bgjobd", description="Run allow-listed background jobs (in the foreground)."
    )
    parser.add_argument("--config", metavar="PATH", help="configuration file (bgjobs.toml)")
    parser.add_argument(
        "--check-config",
        action="store_true",
        help="print the resolved configuration and exit 0 if it is valid",
    )
    parser.add_argument("--version", action="version", version=f"bgjobd {__version__}")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"bgjobd: configuration error: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    if args.check_config:
        print(describe(config))
        return ExitCode.OK
    from bgjobd.app import Daemon
    from bgjobd.memory import return_large_buffers_at_once

    return_large_buffers_at_once()
    try:
        return run_loop(Daemon(config).run())
    except BgjobsError as exc:
        print(f"bgjobd: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return ExitCode.OK


if __name__ == "__main__":
    sys.exit(main())
