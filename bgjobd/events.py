"""Job events for live views: subscribers get every state change after it is committed."""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import UTC, datetime

from bgjobs.model import JobEvent, JobInfo, JobState, Outcome

Listener = Callable[[JobEvent], None]


class EventHub:
    def __init__(self, on_error: Callable[[str], None] = lambda message: None) -> None:
        self._listeners: dict[int, tuple[frozenset[int], Listener]] = {}
        self._next_token = 0
        self._on_error = on_error
        self._told: dict[int, tuple[JobState, int]] = {}
        """The state and attempt last published of each job a listener asked for by id."""

    def subscribe(self, listener: Listener, job_ids: Collection[int] = ()) -> int:
        """Call `listener` for events of these jobs (every job when empty); returns a token
        for `unsubscribe`."""
        self._next_token += 1
        self._listeners[self._next_token] = (frozenset(job_ids), listener)
        return self._next_token

    def unsubscribe(self, token: int) -> None:
        self._listeners.pop(token, None)
        watched = self.watched_ids()
        for job_id in [job_id for job_id in self._told if job_id not in watched]:
            del self._told[job_id]

    def watched_ids(self) -> frozenset[int]:
        """The jobs some listener asked for by id."""
        watched: set[int] = set()
        for job_ids, _ in self._listeners.values():
            watched |= job_ids
        return frozenset(watched)

    def told(self, job_id: int) -> tuple[JobState, int] | None:
        """The state and attempt last published of a job a listener asked for by id."""
        return self._told.get(job_id)

    def seen(self, job_id: int, state: tuple[JobState, int]) -> None:
        """The state a watched job was found in, unpublished (its listeners read it)."""
        if job_id in self.watched_ids():
            self._told[job_id] = state

    def error(self, message: str) -> None:
        """Say what went wrong while serving the listeners (the daemon logs it)."""
        self._on_error(message)

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
            if job.id in job_ids:
                self._told[job.id] = (job.state, job.attempts)
            if not job_ids or job.id in job_ids:
                try:
                    listener(event)
                except Exception as exc:  # noqa: BLE001  # one bad listener must not stop the rest
                    self._on_error(f"an event listener failed: {exc!r}")
