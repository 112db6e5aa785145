"""How a daemon learns that another process committed a change to the store (a submit it
may claim, a cancel of one of its attempts, a job due sooner): pushed notices where the
store has them, a poll where it has not.

PostgreSQL pushes a LISTEN notice to an idle connection the moment another session
commits; the store's connection socket is watched in the event loop, and a notice is read
when it arrives, with no round trip (`Store.read_notices`). A notice read along with the
answer to one of the daemon's own statements reaches the store's `on_news`, which looks on
the loop's next turn. A slow safety poll (`Store.changed`, one round trip) covers the rest.
A store with no push (SQLite's change counter) is polled every POLL_SECONDS, cheaply.

Notices come in bursts while other nodes are busy (one per commit of theirs), and acting on
one means reading the store: news is acted on at once while a few looks are to spare, which
come back one per GATHER_SECONDS; with none to spare, it waits for the next, so that a
burst costs one look, and a steady stream no more looks than a poll at that pace would.

The loop watches a duplicate of the socket's descriptor: libpq closes its own when the
connection breaks, inside any statement, and an event loop must never be left watching a
closed descriptor (whose number the reconnection may reuse). The duplicate is let go as soon
as the store's socket is another one, or none.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import Final

from bgjobd.joblog import NO_JOB, JobLog
from bgjobd.store.base import Store
from bgjobd.store.offline import StoreRetry

POLL_SECONDS: Final = 0.05
"""A store without pushed notices: how often its change counter is read, so the delay
before a job submitted through another node (or a cancel sent to one) is seen here."""
SAFETY_POLL_SECONDS: Final = 1.0
"""A store that pushes notices: how often it is asked anyway (and, offline, how often at
least a reconnection may be tried)."""
OFFLINE_POLL_SECONDS: Final = 0.05
"""Offline, the store reconnects when asked and its backoff allows: asked this often."""
GATHER_SECONDS: Final = 0.05
"""A look to spare comes back this often (the pace of news acted on while it keeps coming)."""
SPARE_LOOKS: Final = 3
"""How many looks may be taken at once, as news comes after a quiet spell."""


class ChangeWatch:
    """Calls `on_change` when another process committed a change (at least once after
    each such commit; sometimes for nothing, never for our own alone)."""

    def __init__(self, store: Store, on_change: Callable[[], None], log: JobLog) -> None:
        self._store = store
        self._on_change = on_change
        self._log = log
        self._loop = asyncio.get_running_loop()
        self._poll_timer: asyncio.TimerHandle | None = None
        self._news = False
        self._spare = float(SPARE_LOOKS)
        self._spare_at = self._loop.time()
        self._act_timer: asyncio.TimerHandle | None = None
        self._look_soon: asyncio.Handle | None = None
        self._socket = _WatchedSocket(self._loop, self._readable)

    def start(self) -> None:
        self._store.on_news = self._heard
        self._follow()
        self._arm_poll()

    async def stop(self) -> None:
        self._store.on_news = None
        for handle in (self._act_timer, self._look_soon, self._poll_timer):
            if handle is not None:
                handle.cancel()
        self._act_timer = self._look_soon = self._poll_timer = None
        self._socket.close()

    @property
    def pushed(self) -> bool:
        """Whether notices are being pushed to us now (a socket is watched)."""
        return self._socket.watching

    def _arm_poll(self) -> None:
        """The next poll, after the delay that fits now (re-armed when that changes)."""
        if self._poll_timer is not None:
            self._poll_timer.cancel()
        if self._socket.watching:
            delay = SAFETY_POLL_SECONDS
        elif self._store.pushes_notices:
            delay = OFFLINE_POLL_SECONDS
        else:
            delay = POLL_SECONDS
        self._poll_timer = self._loop.call_later(delay, self._polled)

    def _polled(self) -> None:
        self._poll_timer = None
        self._look(self._store.changed)
        if self._poll_timer is None:
            self._arm_poll()

    def _readable(self) -> None:
        self._look(self._store.read_notices)

    def _heard(self) -> None:
        """A notice was read with the answer to a statement (we are inside the store's
        call): look once the loop gets back to us."""
        if self._look_soon is None:
            self._look_soon = self._loop.call_soon(self._look_noticed)

    def _look_noticed(self) -> None:
        self._look_soon = None
        self._look(self._store.read_notices)

    def _look(self, ask: Callable[[], bool]) -> None:
        try:
            self._news = ask() or self._news
        except StoreRetry:
            pass  # the store said so once; it reconnects, and then that is news
        except Exception as exc:  # noqa: BLE001  # a store hiccup: the next look retries
            self._log.error(NO_JOB, f"reading the store's changes failed: {exc!r}")
        self._follow()
        if self._news and self._act_timer is None:
            wait = (1.0 - self._spared()) * GATHER_SECONDS
            if wait > 0:
                self._act_timer = self._loop.call_later(wait, self._act)
                # Until then more notices are no more news: they wait in the socket, read
                # all at once, instead of waking the loop one by one.
                self._socket.pause()
            else:
                self._act()

    def _spared(self) -> float:
        """The looks to spare now (fractional while one comes back)."""
        now = self._loop.time()
        self._spare = min(SPARE_LOOKS, self._spare + (now - self._spare_at) / GATHER_SECONDS)
        self._spare_at = now
        return self._spare

    def _act(self) -> None:
        self._act_timer = None
        self._news = False
        self._socket.resume()
        self._spare = max(0.0, self._spared() - 1.0)
        try:
            self._store.read_notices()  # those waiting in the socket: this look covers them
            self._on_change()
        except StoreRetry:
            pass
        except Exception as exc:  # noqa: BLE001  # the next news or poll retries
            self._log.error(NO_JOB, f"reading the store's changes failed: {exc!r}")

    def _follow(self) -> None:
        try:
            socket = self._store.notice_socket()
        except Exception:  # noqa: BLE001  # none to watch: the poll goes on
            socket = None
        watching = self._socket.watching
        self._socket.follow(socket)
        if self._socket.watching != watching and self._poll_timer is not None:
            self._arm_poll()  # pushed notices lost or found: the poll's pace changes


class _WatchedSocket:
    """A duplicate of the store's socket descriptor, watched for reading in the loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, on_readable: Callable[[], None]) -> None:
        self._loop = loop
        self._on_readable = on_readable
        self._fd: int | None = None
        self._identity: tuple[int, int] | None = None
        self._paused = False

    @property
    def watching(self) -> bool:
        return self._fd is not None

    def follow(self, socket: int | None) -> None:
        """Watch `socket` (the store's now) from here on, or nothing (None)."""
        identity = None
        if socket is not None:
            try:
                found = os.fstat(socket)
                identity = (found.st_dev, found.st_ino)  # the socket itself, not its number
            except OSError:
                identity = None
        if identity is not None and identity == self._identity:
            return
        self.close()
        if identity is None or socket is None:
            return
        self._fd = os.dup(socket)  # not inherited: os.dup's copies are close-on-exec
        self._identity = identity
        self._loop.add_reader(self._fd, self._on_readable)

    def pause(self) -> None:
        """Stop watching for a while (the descriptor is kept): see `resume`."""
        if self._fd is not None and not self._paused:
            self._loop.remove_reader(self._fd)
            self._paused = True

    def resume(self) -> None:
        if self._fd is not None and self._paused:
            self._loop.add_reader(self._fd, self._on_readable)
        self._paused = False

    def close(self) -> None:
        if self._fd is None:
            return
        if not self._paused:
            self._loop.remove_reader(self._fd)
        os.close(self._fd)
        self._fd = None
        self._identity = None
        self._paused = False
