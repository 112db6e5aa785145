"""Live updates: the queue's job events, streamed to browsers as server-sent events.

The hub subscribes to the events only while somebody watches, because publishing makes the
engine read every changed job back from the store. Events are only a nudge ("these jobs
changed"); the page then asks the JSON API for the truth, so a slow browser that misses
events loses nothing: its backlog collapses into one "reload everything".
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Collection
from typing import Final

import msgspec
from aiohttp import web

from bgjobd.service import QueueService
from bgjobs.model import JobEvent

HEARTBEAT_SECONDS: Final = 15.0
"""A comment line this often: proxies keep the stream open and a gone browser is noticed."""
MAX_BACKLOG: Final = 200
RETRY_MS: Final = 1000
"""How soon a browser reconnects after the stream broke (e.g. a daemon restart)."""

_encode = msgspec.json.encode


class _Watcher:
    def __init__(self, job_ids: frozenset[int]) -> None:
        self.job_ids = job_ids
        self.backlog: list[JobEvent] = []
        self.overflowed = False
        self.wake = asyncio.Event()

    def push(self, event: JobEvent) -> None:
        if self.job_ids and event.job_id not in self.job_ids:
            return
        if len(self.backlog) >= MAX_BACKLOG:
            self.overflowed = True
            self.backlog.clear()
        elif not self.overflowed:
            self.backlog.append(event)
        self.wake.set()

    def take(self) -> bytes:
        """The next SSE message for what happened since the last one."""
        self.wake.clear()
        if self.overflowed:
            self.overflowed = False
            return b"event: reset\ndata: {}\n\n"
        changes = [
            {
                "id": event.job_id,
                "state": event.state.value,
                "attempt": event.attempt,
                "outcome": event.outcome.value if event.outcome else None,
            }
            for event in self.backlog
        ]
        self.backlog.clear()
        return b"event: jobs\ndata: " + _encode(changes) + b"\n\n"


class LiveHub:
    def __init__(self, service: QueueService) -> None:
        self._service = service
        self._watchers: set[_Watcher] = set()
        self._token: int | None = None
        self._closed = False

    @property
    def watchers(self) -> int:
        return len(self._watchers)

    def _publish(self, event: JobEvent) -> None:
        for watcher in self._watchers:
            watcher.push(event)

    def _join(self, watcher: _Watcher) -> None:
        self._watchers.add(watcher)
        if self._token is None:
            self._token = self._service.subscribe(self._publish)

    def _leave(self, watcher: _Watcher) -> None:
        self._watchers.discard(watcher)
        if not self._watchers and self._token is not None:
            self._service.unsubscribe(self._token)
            self._token = None

    def close(self) -> None:
        """End every stream (the daemon is stopping)."""
        self._closed = True
        for watcher in self._watchers:
            watcher.wake.set()

    async def stream(self, request: web.Request, job_ids: Collection[int]) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)
        watcher = _Watcher(frozenset(job_ids))
        self._join(watcher)
        try:
            await response.write(f"retry: {RETRY_MS}\nevent: hello\ndata: {{}}\n\n".encode())
            while not self._closed:
                try:
                    await asyncio.wait_for(watcher.wake.wait(), HEARTBEAT_SECONDS)
                except TimeoutError:
                    await response.write(b": heartbeat\n\n")
                    continue
                if self._closed:
                    break
                await response.write(watcher.take())
        except ConnectionError:
            return response  # the browser went away
        finally:
            self._leave(watcher)
        with contextlib.suppress(ConnectionError):
            await response.write_eof()
        return response
