"""Transactional enqueue (`bgjobctl.enqueue_in`) against the real PostgreSQL: the job exists
exactly when the application's transaction commits, is built as the daemon builds a
submit, and wakes the daemons at the commit. Each test has a schema of its own (made by a
PostgresStore, as a daemon makes it; dropped after the test)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import tomli_w
from psycopg import sql

from bgjobctl import enqueue_in, enqueue_in_async
from bgjobd.store.postgres import PostgresStore
from bgjobs.config import Config, load_config
from bgjobs.errors import BadParams, ConfigError, RefusedError, TooLarge, UsageError
from bgjobs.model import JobState, Priority
from tests.store.support import (
    PG_DSN,
    address_of,
    drop_schemas,
    open_store,
    require_postgres,
)
from tests.support.waiting import wait_for
from tests.support.workspace import DEFAULT_SETTINGS, merged


@pytest.fixture
def schema(tmp_path: Path) -> Iterator[str]:
    """A schema of this test's own, its tables made as a daemon makes them. Skipped without
    a server, except under CI (`CI=true`), where that fails."""
    require_postgres()
    _, name = address_of("postgresql", tmp_path)
    open_store(("postgresql", name)).close()
    yield name
    drop_schemas()


@pytest.fixture
def store(schema: str) -> Iterator[PostgresStore]:
    """The store of the schema, as a daemon opens it."""
    opened = open_store(("postgresql", schema))
    assert isinstance(opened, PostgresStore)
    yield opened
    opened.close()


def make_config(tmp_path: Path, schema: str, **extra: Any) -> Config:
    settings = merged(
        DEFAULT_SETTINGS,
        {"store": {"backend": "postgresql", "dsn": PG_DSN, "schema": schema}, **extra},
    )
    path = tmp_path / "bgjobs.toml"
    path.write_bytes(tomli_w.dumps(settings).encode())
    return load_config(str(path))


@pytest.fixture
def config(tmp_path: Path, schema: str) -> Config:
    return make_config(
        tmp_path,
        schema,
        job_priority={"Record": "high"},
        jobs={"Record": {"unique": True, "retry_attempts": 2}},
    )


@pytest.fixture
def app() -> Iterator[psycopg.Connection[Any]]:
    """The application's own connection: psycopg's defaults (not autocommit), its own
    search_path (the database's default)."""
    with psycopg.connect(PG_DSN) as connection:
        yield connection


def job_ids(store: PostgresStore) -> list[int]:
    return sorted(job.id for job in store.search(_all())[0])


def _all() -> Any:
    from bgjobd.store.base import JobQuery

    return JobQuery(limit=1000)


def test_a_rolled_back_transaction_leaves_no_job(
    app: psycopg.Connection[Any], config: Config, store: PostgresStore
) -> None:
    store.changed()  # forget what came before
    with pytest.raises(RuntimeError, match="order lost"), app.transaction():
        enqueue_in(app, "Echo", "handle", ["lost"], config=config)
        raise RuntimeError("order lost")
    # The plain (not autocommit) style: the first statement opened the transaction.
    enqueue_in(app, "Echo", "handle", ["lost too"], config=config)
    app.rollback()
    assert job_ids(store) == []
    assert not store.changed()  # no notice woke a daemon
    assert store.counts()[JobState.QUEUED] == 0


def test_a_committed_job_is_in_the_store_and_a_daemon_claims_it(
    app: psycopg.Connection[Any], config: Config, store: PostgresStore
) -> None:
    app.execute("CREATE TEMPORARY TABLE orders (title TEXT)")
    app.commit()
    store.changed()  # forget what came before
    app.execute("INSERT INTO orders VALUES ('Book')")
    job_id = enqueue_in(app, "Echo", "handle", ["Book", 1], config=config)
    # Not visible to the daemons before the commit, nor announced.
    assert store.get(job_id) is None
    assert not store.changed()
    app.commit()
    assert wait_for(store.changed, timeout=10, what="the commit's notice")
    job = store.get(job_id)
    assert job is not None
    assert (job.state, job.params, job.class_name, job.priority) == (
        JobState.QUEUED,
        ["Book", 1],
        "Echo",
        Priority.MEDIUM,
    )
    assert job.max_attempts == 1 and job.timeout == 30 and job.queue == "default"
    assert job.owner.startswith("enqueue_in@")
    # The application's search_path is its own again.
    row = app.execute("SELECT count(*) FROM orders").fetchone()
    assert row == (1,)
    claimed = store.claim_next("node-a", 4242, time.time(), {})
    store.commit()
    assert claimed is not None and claimed.id == job_id and claimed.state is JobState.RUNNING


def test_defaults_of_the_class_a_delay_and_a_chain(
    app: psycopg.Connection[Any], config: Config, store: PostgresStore
) -> None:
    with app.transaction():
        first = enqueue_in(
            app, "Record", "handle", ["r"], 60, then=[("Echo", "handle")], config=config
        )
    chain = store.chain(first)
    assert [link.state for link in chain] == [JobState.SCHEDULED, JobState.WAITING]
    assert [link.class_name for link in chain] == ["Record", "Echo"]
    head = chain[0]
    assert head.priority is Priority.HIGH and head.max_attempts == 3
    assert head.unique_key is not None and head.chain_id == first
    assert head.run_at.timestamp() > head.created_at.timestamp() + 59
    assert store.next_due() == pytest.approx(head.run_at.timestamp(), abs=1e-5)


def test_an_equal_unique_job_or_a_used_key_gives_the_stored_job(
    app: psycopg.Connection[Any], config: Config, store: PostgresStore
) -> None:
    with app.transaction():
        first = enqueue_in(app, "Record", "handle", ["same"], config=config)
        # In the same transaction: found before any insert.
        assert enqueue_in(app, "Record", "handle", ["same"], config=config) == first
    keyed = enqueue_in(app, "Echo", "handle", ["k"], key="order-7", config=config)
    app.commit()
    with app.transaction():
        assert enqueue_in(app, "Echo", "handle", ["other"], key="order-7", config=config) == keyed
        # The refusal was undone to its savepoint: the transaction goes on.
        app.execute("SELECT 1")
    assert job_ids(store) == sorted([first, keyed])


def test_a_unique_job_another_transaction_holds(
    app: psycopg.Connection[Any], config: Config, store: PostgresStore
) -> None:
    """An equal unique job inserted by another transaction, not committed yet: the look-up
    cannot see it, the insert waits on the unique index for that transaction, and once it
    commits, the refusal is undone to its savepoint and the live job is the answer."""
    import threading

    from bgjobd import submission
    from bgjobs.model import JobSpec

    spec = JobSpec(class_name="Record", method="handle", params=["raced"])
    other = store.add(submission.build(config, spec, time.time(), "node-b"))[0]
    answer: list[int | BaseException] = []

    def enqueue() -> None:
        try:
            with app.transaction():
                answer.append(enqueue_in(app, "Record", "handle", ["raced"], config=config))
        except BaseException as exc:  # noqa: BLE001  # the test's thread reports it
            answer.append(exc)

    thread = threading.Thread(target=enqueue)
    thread.start()
    try:
        with psycopg.connect(PG_DSN, autocommit=True) as watcher:
            wait_for(
                lambda: (
                    watcher.execute(
                        "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s",
                        (app.info.backend_pid,),
                    ).fetchone()
                    == ("Lock",)
                ),
                timeout=10,
                what="the enqueue to wait for the other transaction",
            )
        store.commit()
    finally:
        thread.join(timeout=30)
    assert answer == [other]
    assert job_ids(store) == [other]


def test_bad_input_raises_as_a_daemon_submit_does_and_stores_nothing(
    app: psycopg.Connection[Any], tmp_path: Path, schema: str, store: PostgresStore
) -> None:
    config = make_config(
        tmp_path,
        schema,
        max_params_bytes=100,
        jobs={"Record": {"limit_by": 2, "max_concurrency": 1}},
    )
    with app.transaction():
        with pytest.raises(RefusedError, match="NotAllowed"):
            enqueue_in(app, "NotAllowed", "handle", config=config)
        with pytest.raises(RefusedError):
            enqueue_in(app, "Echo", "handle", then=[("Echo", "_private")], config=config)
        with pytest.raises(TooLarge):
            enqueue_in(app, "Echo", "handle", ["x" * 200], config=config)
        with pytest.raises(BadParams, match="limit_by"):
            enqueue_in(app, "Record", "handle", ["a"], config=config)
        with pytest.raises(BadParams, match="unknown queue"):
            enqueue_in(app, "Echo", "handle", queue="nowhere", config=config)
        with pytest.raises(UsageError):
            enqueue_in(app, "Echo", "handle", ["a"], -5, config=config)
        with pytest.raises(UsageError):
            enqueue_in(app, "Echo", "handle", [object()], config=config)
        # The transaction is unharmed: nothing was sent for any of them.
        assert app.execute("SELECT 1").fetchone() == (1,)
    assert job_ids(store) == []


def test_a_configuration_that_is_not_postgresql_or_a_schema_without_a_store(
    app: psycopg.Connection[Any], tmp_path: Path, schema: str
) -> None:
    sqlite_config = tmp_path / "sqlite.toml"
    sqlite_config.write_bytes(tomli_w.dumps(DEFAULT_SETTINGS).encode())
    with pytest.raises(ConfigError, match='backend = "sqlite"'):
        enqueue_in(app, "Echo", "handle", config=str(sqlite_config))
    missing = make_config(tmp_path, schema + "_none")
    with app.transaction():
        with pytest.raises(ConfigError, match="no bgjobs store in schema"):
            enqueue_in(app, "Echo", "handle", config=missing)
        assert app.execute("SELECT 1").fetchone() == (1,)
    exists = app.execute(
        "SELECT count(*) FROM pg_namespace WHERE nspname = %s", (schema + "_none",)
    ).fetchone()
    assert exists == (0,)


def test_an_autocommit_connection_outside_a_transaction_commits_at_once(
    config: Config, store: PostgresStore
) -> None:
    with psycopg.connect(PG_DSN, autocommit=True) as connection:
        job_id = enqueue_in(connection, "Echo", "handle", ["now"], config=config)
        assert connection.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    assert store.get(job_id) is not None


def test_the_asyncio_twin(config: Config, store: PostgresStore) -> None:
    async def main() -> tuple[int, int, int]:
        async with await psycopg.AsyncConnection.connect(PG_DSN) as connection:
            async with connection.transaction():
                kept = await enqueue_in_async(connection, "Echo", "handle", ["a"], config=config)
            try:
                async with connection.transaction():
                    await enqueue_in_async(connection, "Echo", "handle", ["b"], config=config)
                    raise RuntimeError("rolled back")
            except RuntimeError:
                pass
            async with connection.transaction():
                again = await enqueue_in_async(connection, "Record", "handle", ["u"], config=config)
                same = await enqueue_in_async(connection, "Record", "handle", ["u"], config=config)
                assert same == again
            async with connection.pipeline(), connection.transaction():
                keyed = await enqueue_in_async(connection, "Echo", "handle", key="k", config=config)
                found = await enqueue_in_async(connection, "Echo", "handle", key="k", config=config)
                assert found == keyed
            return kept, again, keyed

    stored = sorted(asyncio.run(main()))
    assert job_ids(store) == stored


def test_the_search_path_of_the_application_is_kept(
    app: psycopg.Connection[Any], config: Config, store: PostgresStore, schema: str
) -> None:
    app.execute(sql.SQL("SET search_path TO {}, public").format(sql.Identifier("pg_temp")))
    app.commit()
    with app.transaction():
        enqueue_in(app, "Echo", "handle", config=config)
        row = app.execute("SHOW search_path").fetchone()
    assert row == ("pg_temp, public",)
    assert len(job_ids(store)) == 1


def test_the_sqlalchemy_recipe(config: Config, store: PostgresStore) -> None:
    """The README's recipe: the session's own psycopg connection, in the session's
    transaction (SQLAlchemy's psycopg dialect)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.orm import Session

    engine = create_engine(PG_DSN.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with Session(engine) as session:
            with session.begin():
                session.execute(text("SELECT 1"))
                raw = session.connection().connection.driver_connection
                assert isinstance(raw, psycopg.Connection)
                kept = enqueue_in(raw, "Echo", "handle", ["kept"], config=config)
            with pytest.raises(RuntimeError), session.begin():
                raw = session.connection().connection.driver_connection
                assert isinstance(raw, psycopg.Connection)
                enqueue_in(raw, "Echo", "handle", ["lost"], config=config)
                raise RuntimeError("rolled back")
    finally:
        engine.dispose()
    assert job_ids(store) == [kept]


def test_the_rights_the_readme_names_are_enough(config: Config, schema: str) -> None:
    """An application's role with only the README's grants enqueues a chain with a key."""
    role = f"{schema}_app"
    grants = [
        "CREATE ROLE {role} LOGIN",
        "GRANT USAGE ON SCHEMA {schema} TO {role}",
        "GRANT SELECT, INSERT, UPDATE ON {schema}.jobs TO {role}",
        "GRANT INSERT ON {schema}.state_counts TO {role}",
    ]
    names = {"role": sql.Identifier(role), "schema": sql.Identifier(schema)}
    with psycopg.connect(PG_DSN, autocommit=True) as admin:
        for grant in grants:
            admin.execute(sql.SQL(grant).format(**names))
        try:
            dsn = psycopg.conninfo.make_conninfo(PG_DSN, user=role)
            with psycopg.connect(dsn) as connection, connection.transaction():
                first = enqueue_in(
                    connection, "Echo", "handle", then=[("Echo", "handle")], key="k", config=config
                )
                again = enqueue_in(connection, "Echo", "handle", key="k", config=config)
            assert again == first
        finally:
            admin.execute(sql.SQL("DROP OWNED BY {role}").format(**names))
            admin.execute(sql.SQL("DROP ROLE {role}").format(**names))


def test_a_connection_with_its_own_row_factory_or_in_pipeline_mode(
    config: Config, store: PostgresStore
) -> None:
    from psycopg.rows import dict_row

    with psycopg.connect(PG_DSN, row_factory=dict_row) as connection:
        with connection.transaction():
            first = enqueue_in(connection, "Record", "handle", ["d"], config=config)
            assert enqueue_in(connection, "Record", "handle", ["d"], config=config) == first
        with connection.pipeline(), connection.transaction():
            second = enqueue_in(connection, "Echo", "handle", ["p"], key="p", config=config)
            assert enqueue_in(connection, "Echo", "handle", key="p", config=config) == second
    assert job_ids(store) == sorted([first, second])
