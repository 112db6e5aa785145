"""The transactional enqueue's Django recipe, as the README writes it: the test project
(tests/django_project) on PostgreSQL, `enqueue_in(connection.connection, ...)` inside
`transaction.atomic()`; the job exists exactly when the block commits. The configuration
is found as an application finds it (`$BGJOBS_CONFIG`)."""

from __future__ import annotations

import psycopg
from psycopg import sql

from bgjobs.model import JobState
from tests.examples.test_django_backend import PROJECT, django
from tests.store.support import PG_DSN, address_of, drop_schemas, open_store, require_postgres
from tests.support.workspace import Workspace


def test_enqueue_in_a_django_transaction(workspace: Workspace) -> None:
    require_postgres()
    _, schema = address_of("postgresql", workspace.root)
    app_schema = f"{schema}_app"
    open_store(("postgresql", schema)).close()  # the store's tables, as a daemon makes them
    try:
        with psycopg.connect(PG_DSN, autocommit=True) as db:
            db.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(app_schema)))
        for package in ("shopsite", "shop"):
            (workspace.root / package).symlink_to(PROJECT / package, target_is_directory=True)
        workspace.env.update(
            DJANGO_SETTINGS_MODULE="shopsite.settings",
            SHOP_PG_DSN=PG_DSN,
            SHOP_PG_SCHEMA=app_schema,
        )
        store_settings = {"backend": "postgresql", "dsn": PG_DSN, "schema": schema}
        workspace.write_config({"store": store_settings})
        migrated = workspace.run("-m", "django", "migrate", "--verbosity", "0")
        assert migrated.returncode == 0, migrated.stderr
        out = django(
            workspace,
            """
            from django.db import connection, transaction
            from bgjobctl import enqueue_in
            from shop.models import Order

            connection.ensure_connection()
            with transaction.atomic():
                order = Order.objects.create(title="Book")
                out["kept"] = enqueue_in(connection.connection, "Echo", "handle", [order.id])
            try:
                with transaction.atomic():
                    order = Order.objects.create(title="Lost")
                    enqueue_in(connection.connection, "Echo", "handle", [order.id])
                    raise RuntimeError("the order could not be saved")
            except RuntimeError:
                pass
            # The enqueue as the block's first statement: it opens the block's transaction.
            with transaction.atomic():
                out["first"] = enqueue_in(connection.connection, "Echo", "handle", ["first"])
            try:
                with transaction.atomic():
                    enqueue_in(connection.connection, "Echo", "handle", ["first, lost"])
                    raise RuntimeError("rolled back")
            except RuntimeError:
                pass
            out["orders"] = sorted(Order.objects.values_list("title", flat=True))
            """,
        )
        assert out["orders"] == ["Book"]
        store = open_store(("postgresql", schema))
        try:
            kept, first = store.get(int(str(out["kept"]))), store.get(int(str(out["first"])))
            assert kept is not None and first is not None
            assert (kept.state, first.params) == (JobState.QUEUED, ["first"])
            assert store.counts()[JobState.QUEUED] == 2
        finally:
            store.close()
    finally:
        with psycopg.connect(PG_DSN, autocommit=True) as db:
            drop = sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE")
            db.execute(drop.format(sql.Identifier(app_schema)))
        drop_schemas()
