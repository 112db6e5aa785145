"""The store a configuration names (`[store] backend`): SQLite's file or a PostgreSQL schema.

The daemon opens its SQLite store through `storehealth.open_store` (with its integrity
check and background checkpoints); this is for what opens either backend alike
(`run_job.py`, the drainer, tools), and for the daemon's PostgreSQL store.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from bgjobs.config import Config
from bgjobs.errors import BgjobsError, ConfigError, ExitCode

if TYPE_CHECKING:
    from bgjobd.store.postgres import PostgresStore
    from bgjobd.store.sqlite import SQLiteStore

    OpenedStore = SQLiteStore | PostgresStore
    """Either backend: a store with what the journal needs (kept writes, on_begin)."""


class StoreUnreachable(BgjobsError):
    """The store's server does not answer when it is opened: nothing can start on it."""

    exit_code = ExitCode.FAILED


class StoreRefused(BgjobsError):
    """The store's server answered, but will not let the DSN's role make or open the store
    (its privileges): nothing can start on it."""

    exit_code = ExitCode.FAILED


def open_store(config: Config, on_error: Callable[[str], None] | None = None) -> OpenedStore:
    """The configured store, opened (PostgreSQL: connected, its schema made or checked)."""
    if config.settings.store.backend == "postgresql":
        return open_postgres(config, on_error)
    from bgjobd.store.sqlite import SQLiteStore

    return SQLiteStore(config.database_path, fsync=config.settings.daemon.fsync)


def open_postgres(config: Config, on_error: Callable[[str], None] | None = None) -> PostgresStore:
    """The PostgreSQL store of the configuration, its connection named after the node. A
    server that does not answer is a clear error (StoreUnreachable), not a traceback;
    `on_error` hears of the connection lost and found again later."""
    import psycopg  # only with this backend

    from bgjobd.store.postgres import PostgresStore

    if config.store_dsn is None:
        raise ConfigError('store.dsn: backend = "postgresql" needs a connection string')
    schema = config.settings.store.schema
    try:
        return PostgresStore(
            config.store_dsn, schema, application_name=config.node_name, on_error=on_error
        )
    except psycopg.OperationalError as exc:
        raise StoreUnreachable(
            f"the PostgreSQL store (schema {schema!r}) cannot be reached: {_reason(exc)}"
        ) from exc
    except psycopg.errors.InsufficientPrivilege as exc:
        raise refused(schema, exc) from exc


def refused(schema: str, exc: BaseException) -> StoreRefused:
    """The server's refusal (InsufficientPrivilege) to make or open the store, with what
    the role needs."""
    return StoreRefused(
        f"the PostgreSQL store (schema {schema!r}) cannot be made or opened: "
        f"{_reason(exc)}. The DSN's role needs the right to create schemas in the "
        f'database, or a schema made for it once (CREATE SCHEMA "{schema}" '
        "AUTHORIZATION that_role), in which it makes the tables itself"
    )


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
