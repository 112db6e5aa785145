"""psycopg's pipeline, ended so that PostgreSQL's idle-in-transaction timeout still works.

PostgreSQL arms `idle_in_transaction_session_timeout` when it has answered a Sync and waits
for the next message; any message disarms it until the next Sync. psycopg's pipeline sends
a Flush after its closing Sync whenever answers are still unread, so a transaction left
open by a pipeline (an attempt's end with the worker's next claim) was never timed out: a
node frozen then (SIGSTOP, a paused VM) held its row locks until it woke or its lease ran
out, and another node's cancel or reclaim of those rows waited as long. This pipeline
reads those answers after the Sync without a Flush: the server sends and flushes them at
the Sync anyway.

It overrides a private step of psycopg's `Pipeline` (its exit) and hands the connection
the pipeline to enter: `tests/store/test_reconnect.py`'s frozen-session tests fail if a
psycopg release changes either.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import psycopg
from psycopg.abc import PQGen


class _EndedBySync(psycopg.Pipeline):
    def _exit_gen(self) -> PQGen[None]:
        try:
            self._enqueue_sync()
            yield from self._communicate_gen()
        finally:
            yield from self._fetch_gen(flush=False)


@contextlib.contextmanager
def pipeline(db: psycopg.Connection[Any]) -> Iterator[psycopg.Pipeline]:
    """`db.pipeline()`, its last message to the server a Sync."""
    if db._pipeline is None:  # psycopg enters the pipeline it finds there
        db._pipeline = _EndedBySync(db)
    with db.pipeline() as entered:
        yield entered
