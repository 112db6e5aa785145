"""Exceptions a job raises to decide its own fate, overriding every retry rule."""

from __future__ import annotations


class Retry(Exception):
    """Fail this attempt and try again after `delay` seconds (None: the job's usual delay),
    as long as attempts remain."""

    def __init__(self, reason: str = "", *, delay: float | None = None) -> None:
        super().__init__(reason)
        self.delay = delay


class Fail(Exception):
    """Fail the job now, with no further attempts."""

    def __init__(self, reason: str = "") -> None:
        super().__init__(reason)
