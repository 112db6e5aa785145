"""Exceptions a job raises to decide its own fate, overriding every retry rule."""

from __future__ import annotations

from bgjobs.times import delay_problem


class InvalidRetryDelay(ValueError):
    """`Retry(delay=...)` was given a delay out of range (NaN, infinite, negative, over ten
    years) or not a number. Raised in place of the `Retry`, so the attempt fails with this
    error and the usual retry rules decide (a rule may name it)."""


class Retry(Exception):
    """Fail this attempt and try again after `delay` seconds (None: the job's usual delay),
    as long as attempts remain. The delay must be from 0 to ten years
    (`bgjobs.times.MAX_DELAY`); any other raises `InvalidRetryDelay`."""

    def __init__(self, reason: str = "", *, delay: float | None = None) -> None:
        super().__init__(reason)
        self.delay = delay

    @property
    def delay(self) -> float | None:
        return self._delay

    @delay.setter
    def delay(self, value: float | None) -> None:
        problem = None if value is None else delay_problem(value)
        if problem:
            raise InvalidRetryDelay(f"Retry(delay=...): the delay {problem}")
        self._delay = None if value is None else float(value)


class Fail(Exception):
    """Fail the job now, with no further attempts."""

    def __init__(self, reason: str = "") -> None:
        super().__init__(reason)
