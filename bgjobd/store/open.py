"""The store a configuration names (`[store] backend`): SQLite's file or a PostgreSQL schema.

The daemon opens its SQLite store through `storehealth.open_store` (with its integrity
check and background checkpoints); this is for what opens either backend alike.
"""

from __future__ import annotations

from bgjobd.store.base import Store
from bgjobs.config import Config
from bgjobs.errors import ConfigError


def open_store(config: Config) -> Store:
    """The configured store, opened (PostgreSQL: connected, its schema made or checked)."""
    store = config.settings.store
    if store.backend == "postgresql":
        from bgjobd.store.postgres import PostgresStore  # psycopg: only with this backend

        if config.store_dsn is None:
            raise ConfigError('store.dsn: backend = "postgresql" needs a connection string')
        return PostgresStore(config.store_dsn, store.schema, application_name=config.node_name)
    from bgjobd.store.sqlite import SQLiteStore

    return SQLiteStore(config.database_path, fsync=config.settings.daemon.fsync)
