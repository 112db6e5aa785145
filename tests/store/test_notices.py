"""A daemon learns of another process's commit from PostgreSQL's pushed notice, not from a
poll (`bgjobd.notices.ChangeWatch` on a real server): with the safety poll an hour apart,
a commit made through another connection is still acted on, whether its notice arrives on
the idle socket or along with the answer to one of the store's own statements; a burst of
commits is acted on in a few looks; the watch follows the store to its new connection after
the server dropped the old one, and leaves no descriptor behind."""

from __future__ import annotations

import asyncio
import os
import select
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from bgjobd import notices
from bgjobd.joblog import JobLog
from bgjobd.notices import ChangeWatch
from bgjobd.store.postgres import PostgresStore
from bgjobs.model import JobState, Outcome
from tests.store.support import (
    PG_DSN,
    address_of,
    attempt,
    new_job,
    open_store,
    require_postgres,
)

DEADLINE = 15.0


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[tuple[PostgresStore, PostgresStore]]:
    """The watched store and another connection to its schema."""
    require_postgres()
    address = address_of("postgresql", tmp_path)
    watched, other = open_store(address), open_store(address)
    assert isinstance(watched, PostgresStore) and isinstance(other, PostgresStore)
    try:
        yield watched, other
    finally:
        other.close()
        watched.close()


@pytest.fixture(autouse=True)
def _no_safety_poll(monkeypatch: pytest.MonkeyPatch) -> None:
    """An hour between safety polls: within a test, only a pushed notice can wake the watch."""
    monkeypatch.setattr(notices, "SAFETY_POLL_SECONDS", 3600.0)


async def _until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {DEADLINE}s waiting for {what}")
        await asyncio.sleep(0.005)


def _started(store: PostgresStore, tmp_path: Path) -> tuple[ChangeWatch, list[float]]:
    """A watch on `store`, started from what is there now, and the times it acted."""
    looks: list[float] = []
    watch = ChangeWatch(store, lambda: looks.append(time.monotonic()), JobLog(tmp_path))
    store.changed()
    watch.start()
    return watch, looks


def _inode(store: PostgresStore) -> int:
    socket = store.notice_socket()
    assert socket is not None
    return os.fstat(socket).st_ino


def _descriptors_of(inode: int) -> int:
    """This process's descriptors open on the socket `inode` (the store's own, the watch's
    duplicate)."""
    count = 0
    for name in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{name}") == f"socket:[{inode}]"
        except OSError:
            continue  # the listing's own descriptor, gone
    return count


def test_a_commit_through_another_connection_is_acted_on_as_its_notice_arrives(
    stores: tuple[PostgresStore, PostgresStore], tmp_path: Path
) -> None:
    watched, other = stores

    async def scenario() -> None:
        watch, looks = _started(watched, tmp_path)
        assert watch.pushed
        assert _descriptors_of(_inode(watched)) == 2  # libpq's and the watch's
        # Its own commit is not news.
        watched.add([new_job("Mine")])
        watched.commit()
        other.add([new_job("Theirs")])
        await asyncio.sleep(0.05)
        assert looks == []  # not committed yet: nothing pushed
        other.commit()
        await _until(lambda: len(looks) == 1, "the pushed notice to be acted on")
        await watch.stop()
        assert not watch.pushed
        assert _descriptors_of(_inode(watched)) == 1

    asyncio.run(scenario())


def test_a_notice_read_with_a_statement_s_answer_is_acted_on_too(
    stores: tuple[PostgresStore, PostgresStore], tmp_path: Path
) -> None:
    watched, other = stores

    async def scenario() -> None:
        watch, looks = _started(watched, tmp_path)
        socket = watched.notice_socket()
        assert socket is not None
        other.add([new_job("Theirs")])
        other.commit()
        # The notice is on the socket; the store's own statement reads it before the loop
        # could see the socket readable, so only the store's hand-over can tell the watch.
        readable, _, _ = select.select([socket], [], [], DEADLINE)
        assert readable
        assert watched.counts()
        assert not select.select([socket], [], [], 0)[0]
        await _until(lambda: len(looks) == 1, "the notice read with a statement to be acted on")
        await watch.stop()

    asyncio.run(scenario())


def test_a_burst_of_commits_is_acted_on_in_a_few_looks_the_last_one_included(
    stores: tuple[PostgresStore, PostgresStore], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    watched, other = stores
    monkeypatch.setattr(notices, "GATHER_SECONDS", 2.0)

    async def scenario() -> None:
        watch, looks = _started(watched, tmp_path)
        for number in range(20):
            other.add([new_job(f"Theirs{number}")])
            other.commit()
            await asyncio.sleep(0)  # the watch may read each notice as it comes
        last_commit = time.monotonic()
        await _until(lambda: looks[-1] > last_commit if looks else False, "the last commit")
        # A few looks at once (those to spare), then the rest of the burst gathered into
        # one, a look's pace later: never one per commit.
        assert len(looks) <= notices.SPARE_LOOKS + 1
        if len(looks) == notices.SPARE_LOOKS + 1:
            assert looks[-1] - looks[-2] >= 0.9 * notices.GATHER_SECONDS
        await watch.stop()

    asyncio.run(scenario())


def test_the_watch_follows_the_store_to_its_new_connection_after_the_server_dropped_it(
    stores: tuple[PostgresStore, PostgresStore], tmp_path: Path
) -> None:
    watched, other = stores

    async def scenario() -> None:
        watch, looks = _started(watched, tmp_path)
        old_pid, old_inode = watched._db.info.backend_pid, _inode(watched)
        with psycopg.connect(PG_DSN, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (old_pid,))
        # The server's goodbye makes the socket readable: the store finds itself offline,
        # the watch lets the socket go and polls; the store reconnects, which is news.
        await _until(lambda: len(looks) == 1, "the reconnection to count as news")
        await _until(lambda: watch.pushed, "the new connection's socket to be watched")
        assert watched._db.info.backend_pid != old_pid
        other.add([new_job("After")])
        other.commit()
        await _until(lambda: len(looks) == 2, "a notice on the new connection to be acted on")
        assert _descriptors_of(old_inode) == 0  # the old socket let go, not kept open
        assert _descriptors_of(_inode(watched)) == 2
        await watch.stop()
        assert _descriptors_of(_inode(watched)) == 1

    asyncio.run(scenario())


def test_only_what_another_node_may_act_on_sends_a_notice(
    stores: tuple[PostgresStore, PostgresStore],
) -> None:
    """A job stored, made queued or scheduled again, or asked to cancel while it runs is
    news to the other nodes; a claim and an attempt's end are not (a commit that notifies
    holds a lock over the whole database until it is flushed: see the schema's triggers)."""
    watched, other = stores
    watched.changed()

    def news_after(write: Callable[[], object]) -> bool:
        write()
        other.commit()
        return watched.changed()

    first, second = (new_job(), new_job())
    assert news_after(lambda: other.add([first]))
    assert news_after(lambda: other.add([second]))
    claimed = other.claim_batch("other", [11, 12], time.time(), {})
    other.commit()
    assert len(claimed) == 2 and not watched.changed()
    ended, retried = claimed
    assert not news_after(
        lambda: other.finish_attempt(ended.id, attempt(1, Outcome.SUCCEEDED), JobState.SUCCEEDED)
    )
    assert news_after(lambda: other.request_cancel(retried.id, "asked"))
    assert news_after(
        lambda: other.finish_attempt(
            retried.id, attempt(1, Outcome.FAILED), JobState.SCHEDULED, run_at=time.time() + 60
        )
    )
