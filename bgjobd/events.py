"""Job events for live views: subscribers get every state change after it is committed."""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import UTC, datetime

from bgjobs.model import JobEvent, JobInfo, Outcome

Listener = Callable[[JobEvent], None]


class EventHub:
    def __init__(self, on_error: Callable[[str], None] = lambda message: None) -> None:
        self._listeners: dict[int, tuple[frozenset[int], Listener]] = {}
        self._next_token = 0
        self._on_error = on_error

    def subscribe(self, listener: Listener, job_ids: Collection[int] = ()) -> int:
        """Call `listener` for events of these jobs (every job when empty); returns a token
        for `unsubscribe`."""
        self._next_token += 1
        self._listeners[self._next_token] = (frozenset(job_ids), listener)
        return self._next_token

    def unsubscribe(self, token: int) -> None:
        self._listeners.pop(token, None)

    @property
    def has_listeners(self) -> bool:
        return bool(self._listeners)

    def publish(self, job: JobInfo, outcome: Outcome | None = None) -> None:
        if not self._listeners:
            return
        event = JobEvent(
            job_id=job.id,
            state=job.state,
            class_name=job.class_name,
            method=job.method,
            attempt=job.attempts,
            at=datetime.now(UTC),
            outcome=outcome,
            progress=job.progress,
            progress_message=job.progress_message,
        )
        for job_ids, listener in list(self._listeners.values()):
            if not job_ids or job.id in job_ids:
                try:
                    listener(event)
                except Exception as exc:  # noqa: BLE001  # one bad listener must not stop the rest
                    self._on_error(f"an event listener failed: {exc!r}")
