"""`[store]`: each backend's keys checked in-process, and `open_store` opening the backend
the configuration names."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from bgjobd.store.open import StoreRefused, open_store
from bgjobd.store.postgres import PostgresStore, SchemaTooNew
from bgjobd.store.sqlite import SQLiteStore
from bgjobs.config import STORE_DSN_ENV, Config, parse_settings
from bgjobs.errors import ConfigError
from tests.store.support import PG_DSN, address_of, new_job, require_postgres
from tests.store.support import open_store as open_test_store

PG = 'backend = "postgresql"'


@pytest.fixture(autouse=True)
def _no_dsn_from_outside(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(STORE_DSN_ENV, raising=False)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (PG, 'store.dsn: backend = "postgresql" needs a connection string'),
        (f'{PG}\ndsn = "x"\npath = "q.db"', 'store.path: only for backend = "sqlite"'),
        ('dsn = "postgresql://h/db"', 'store.dsn: only for backend = "postgresql"'),
        ('schema = "tenant"', 'store.schema: only for backend = "postgresql"'),
        (f'{PG}\ndsn = "x"\nschema = "a-b"', "store.schema: Expected `str` matching"),
        ('backend = "mysql"', "store.backend: Invalid enum value 'mysql'"),
    ],
)
def test_each_backend_takes_its_own_keys(table: str, message: str) -> None:
    with pytest.raises(ConfigError) as refused:
        parse_settings(f"[store]\n{table}\n", source="bgjobs.toml")
    assert str(refused.value).startswith(f"bgjobs.toml: {message}")


def test_the_environment_gives_the_dsn(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(STORE_DSN_ENV, "postgresql://from-env/db")
    settings = parse_settings(f'[store]\n{PG}\ndsn = "postgresql://from-file/db"\n')
    assert Config(settings, None).store_dsn == "postgresql://from-env/db"
    assert Config(parse_settings(f"[store]\n{PG}\n"), None).store_dsn == "postgresql://from-env/db"


def test_open_store_opens_the_configured_backend(
    backend_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, where = address_of(backend_name, tmp_path)
    if backend_name == "sqlite":
        text = f'[store]\npath = "{where}"\n'
    else:
        open_test_store((backend_name, where)).close()  # counted for the drop after the test
        monkeypatch.setenv(STORE_DSN_ENV, PG_DSN)
        text = f'[store]\n{PG}\nschema = "{where}"\n[daemon]\nnode = "open-test"\n'
    store = open_store(Config(parse_settings(text), None))
    try:
        assert isinstance(store, SQLiteStore if backend_name == "sqlite" else PostgresStore)
        assert sum(store.counts().values()) == 0
    finally:
        store.close()


def test_the_daemon_on_an_unreachable_postgresql_stops_with_a_clear_error(
    tmp_path: Path,
) -> None:
    """No server at the DSN: the daemon's start stops with what it could not reach (exit
    1), not a traceback, and without making a database file instead."""
    from bgjobd.store.open import StoreUnreachable
    from bgjobd.storehealth import open_store as open_daemon_store

    settings = parse_settings(f'[store]\n{PG}\ndsn = "postgresql://nowhere.invalid/test"\n')
    config = Config(settings=settings, path=tmp_path / "bgjobs.toml")
    with pytest.raises(StoreUnreachable, match=r"the PostgreSQL store \(schema 'bgjobs'\)"):
        open_daemon_store(config, print)
    assert StoreUnreachable.exit_code == 1
    assert not (tmp_path / "storage").exists()


def _config_as(role: str, schema: str, tmp_path: Path) -> Config:
    dsn = make_conninfo(PG_DSN, user=role)
    text = f'[store]\n{PG}\ndsn = "{dsn}"\nschema = "{schema}"\n[daemon]\nnode = "open-test"\n'
    return Config(parse_settings(text), tmp_path / "bgjobs.toml")


def test_a_role_that_may_not_make_the_schema_gets_a_clear_error(
    own_role: str, tmp_path: Path
) -> None:
    from bgjobd.storehealth import open_store as open_daemon_store

    _, schema = address_of("postgresql", tmp_path)
    with pytest.raises(StoreRefused) as refused:
        open_daemon_store(_config_as(own_role, schema, tmp_path), print)
    assert "cannot be made or opened: permission denied" in str(refused.value)
    assert f'CREATE SCHEMA "{schema}" AUTHORIZATION' in str(refused.value)
    assert StoreRefused.exit_code == 1


def test_a_schema_made_for_the_role_is_enough(own_role: str, tmp_path: Path) -> None:
    """The usual least-privilege set-up: an administrator makes the schema for the role,
    which may not create schemas itself; the store makes its tables there."""
    _, schema = address_of("postgresql", tmp_path)
    with psycopg.connect(PG_DSN, autocommit=True) as db:
        db.execute(
            sql.SQL("CREATE SCHEMA {} AUTHORIZATION {}").format(
                sql.Identifier(schema), sql.Identifier(own_role)
            )
        )
    store = open_store(_config_as(own_role, schema, tmp_path))
    try:
        assert sum(store.counts().values()) == 0
        assert store.add([new_job()]) != []
        store.commit()
    finally:
        store.close()
    again = open_store(_config_as(own_role, schema, tmp_path))  # the tables found, as made
    try:
        assert sum(again.counts().values()) == 1
    finally:
        again.close()


def test_a_schema_of_a_newer_bgjobs_is_refused_clearly(tmp_path: Path) -> None:
    require_postgres()
    address = address_of("postgresql", tmp_path)
    open_test_store(address).close()
    with psycopg.connect(PG_DSN, autocommit=True) as db:
        meta = sql.Identifier(address[1], "meta")
        db.execute(sql.SQL("UPDATE {} SET value = '99' WHERE key = 'schema_version'").format(meta))
    with pytest.raises(SchemaTooNew, match="is of version 99, newer than this bgjobs writes"):
        open_test_store(address)
    assert SchemaTooNew.exit_code == 1


def test_a_read_only_server_is_refused_at_start_as_unreachable(tmp_path: Path) -> None:
    """A DSN that leads to a standby (or a read-only default): the daemon's start stops
    with why (exit 1), before it writes anything."""
    from bgjobd.store.open import StoreUnreachable
    from bgjobd.storehealth import open_store as open_daemon_store

    require_postgres()
    _, schema = address_of("postgresql", tmp_path)
    dsn = make_conninfo(PG_DSN, options="-c default_transaction_read_only=on")
    text = f'[store]\n{PG}\ndsn = "{dsn}"\nschema = "{schema}"\n[daemon]\nnode = "open-test"\n'
    config = Config(parse_settings(text), tmp_path / "bgjobs.toml")
    with pytest.raises(StoreUnreachable, match="cannot be reached: the server is read-only"):
        open_daemon_store(config, print)
    with psycopg.connect(PG_DSN, autocommit=True) as db:
        found = db.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone()
    assert found is None, "nothing was made"
