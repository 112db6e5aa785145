"""PostgreSQL for the benchmark: the server (database `test` on 127.0.0.1:5432 unless
`$BGJOBS_STORE_DSN` says otherwise), and the private schemas each system of a run gets.

Every schema is named after this run's marker and recorded as it is made, so the run's
last step drops whatever is left (even after an error or Ctrl-C); no other schema is ever
touched."""

from __future__ import annotations

import itertools
import os
from typing import Final
from urllib.parse import quote

from bench import procs

# The same server as bench/store_backends.py and the store tests.
DSN: Final = os.environ.get("BGJOBS_STORE_DSN", "postgresql://postgres@127.0.0.1:5432/test")
_serial = itertools.count(1)
_made: set[str] = set()


def unavailable() -> str | None:
    """Why PostgreSQL cannot be used, or None when it answers."""
    try:
        import psycopg
    except ImportError as exc:
        return f"psycopg is not installed ({exc})"
    try:
        with psycopg.connect(DSN, connect_timeout=5) as db:
            db.execute("SELECT 1")
    except psycopg.Error as exc:
        return f"PostgreSQL at {DSN} does not answer: {exc}".strip()
    return None


def _execute(statement: str) -> None:
    import psycopg

    with psycopg.connect(DSN, autocommit=True) as db:
        db.execute(statement)  # only names of ours ([a-z0-9_]) are interpolated


def fresh_schema(label: str) -> str:
    """A new, empty schema for one system's run: `bgb_<label>_<run>_<n>`."""
    name = f"bgb_{label}_{procs.MARKER[:8]}_{next(_serial)}"
    _execute(f"CREATE SCHEMA {name}")
    _made.add(name)
    return name


def drop_schema(name: str) -> None:
    _execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
    _made.discard(name)


def drop_leftovers() -> tuple[list[str], list[str]]:
    """Drop the schemas of this run still there: (dropped, still there, with why)."""
    dropped: list[str] = []
    failed: list[str] = []
    for name in sorted(_made):
        try:
            drop_schema(name)
            dropped.append(name)
        except Exception as exc:  # noqa: BLE001 - e.g. the server restarting: say so
            failed.append(f"{name} ({str(exc).strip()})")
    return dropped, failed


def libpq_dsn(schema: str) -> str:
    """The DSN with the schema first on the search path (libpq's `options`): for peers
    whose SQL names its tables without a schema."""
    separator = "&" if "?" in DSN else "?"
    return f"{DSN}{separator}options={quote(f'-csearch_path={schema}')}"
