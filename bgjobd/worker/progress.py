"""The worker's end of `bgjobs.progress`: an attempt's updates, sent on the result pipe.

A job may report from any thread and as often as it likes; at most one update per
`MIN_INTERVAL` leaves the worker, the ones in between are replaced by the next, and the
latest is sent when the interval is over (by a timer) or when the attempt ends, so the last
one always arrives, before the attempt's end. Sending and the end share a lock: nothing is
written to the pipe once `reporting` has returned.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Final

from bgjobd.worker.messages import FromWorker, Progress, RunAttempt
from bgjobs.progress import install

MIN_INTERVAL: Final = 0.1
"""Seconds between two updates sent for one attempt."""


class _AttemptProgress:
    def __init__(self, request: RunAttempt, send: Callable[[FromWorker], None]) -> None:
        self._job_id = request.job_id
        self._attempt = request.attempt
        self._send = send
        self._lock = threading.Lock()
        self._pending: tuple[float, str | None] | None = None
        self._last_sent = -MIN_INTERVAL
        self._timer: threading.Timer | None = None
        self._closed = False

    def report(self, fraction: float, message: str | None) -> None:
        with self._lock:
            if self._closed:
                return
            self._pending = (fraction, message)
            wait = self._last_sent + MIN_INTERVAL - time.monotonic()
            if wait <= 0:
                self._send_pending()
            elif self._timer is None:
                self._timer = threading.Timer(wait, self._on_timer)
                self._timer.daemon = True
                self._timer.start()

    def _on_timer(self) -> None:
        with self._lock:
            self._timer = None
            if not self._closed:
                self._send_pending()

    def close(self) -> None:
        """The attempt is over: the latest update goes now, and nothing after it."""
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._send_pending()
            self._closed = True

    def _send_pending(self) -> None:
        if self._pending is None:
            return
        fraction, message = self._pending
        self._pending = None
        self._last_sent = time.monotonic()
        update = Progress(
            job_id=self._job_id, attempt=self._attempt, fraction=fraction, message=message
        )
        # A daemon that is gone is noticed on the command pipe; the job need not fail here.
        with contextlib.suppress(OSError):
            self._send(update)


@contextmanager
def reporting(request: RunAttempt, send: Callable[[FromWorker], None]) -> Iterator[None]:
    """While the attempt runs, `bgjobs.progress` reports to the daemon."""
    updates = _AttemptProgress(request, send)
    install(updates.report)
    try:
        yield
    finally:
        install(None)
        updates.close()
