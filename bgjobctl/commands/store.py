"""`bgjobctl store migrate`: carry a SQLite store into the configured PostgreSQL store.

The one command that talks to the stores rather than to a daemon: it must run while no
daemon uses the SQLite store (see `bgjobd.store.migrate`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from bgjobctl.context import CommandContext
from bgjobs.errors import ConfigError, ExitCode

HELP = "carry a SQLite store into the configured PostgreSQL store (store migrate)"
_PREFIX = "sqlite:"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["migrate"], help="migrate: SQLite -> PostgreSQL")
    parser.add_argument(
        "--from",
        dest="source",
        metavar="PATH",
        help="the SQLite store (PATH or sqlite:PATH; default: the configuration's "
        "<storage>/bgjobs.db)",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="check and count everything, then write nothing"
    )


def run(ctx: CommandContext) -> int:
    from bgjobd.store.migrate import migrate, state_order

    config = ctx.config
    store = config.settings.store
    if store.backend != "postgresql" or config.store_dsn is None:
        raise ConfigError(
            "store migrate carries a SQLite store into the configured PostgreSQL store: "
            f'{config.path or "this configuration"} needs [store] backend = "postgresql" '
            "with its dsn and schema (the SQLite store is --from PATH)"
        )
    source = ctx.args.source or str(config.database_path)
    source = source.removeprefix(_PREFIX)
    carried = migrate(
        Path(source).expanduser(), config.store_dsn, store.schema, dry_run=ctx.args.dry_run
    )
    if ctx.json:
        ctx.print_json(
            {
                "source": str(carried.source),
                "schema": carried.schema,
                "jobs": carried.jobs,
                "attempts": carried.attempts,
                "outputs": carried.outputs,
                "pauses": carried.pauses,
                "starts": carried.starts,
                "next_id": carried.next_id,
                "dry_run": carried.dry_run,
            }
        )
        return ExitCode.OK
    states = ", ".join(f"{n} {state}" for state, n in state_order(carried.jobs)) or "none"
    verb = "would carry" if carried.dry_run else "carried"
    ctx.print(
        f"{verb} {sum(carried.jobs.values())} job(s) from {carried.source} into PostgreSQL "
        f"schema {carried.schema!r}: {states}; {carried.attempts} earlier attempt(s), "
        f"{carried.outputs} output tail(s), {carried.pauses} pause(s), {carried.starts} "
        f"rate-limit start(s); new jobs get ids from {carried.next_id} on"
    )
    if carried.dry_run:
        ctx.print("dry run: nothing was written")
    else:
        ctx.print(
            f"{carried.source} is left as it was: keep it as a backup, and start no daemon on it"
        )
    return ExitCode.OK
