"""`[store]`: each backend's keys checked in-process, and `open_store` opening the backend
the configuration names."""

from __future__ import annotations

from pathlib import Path

import pytest

from bgjobd.store.open import open_store
from bgjobd.store.postgres import PostgresStore
from bgjobd.store.sqlite import SQLiteStore
from bgjobs.config import STORE_DSN_ENV, Config, parse_settings
from bgjobs.errors import ConfigError
from tests.store.support import PG_DSN, address_of
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
