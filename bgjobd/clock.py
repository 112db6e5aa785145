"""The schedules' clock: the wall clock, or for tests one that runs faster from a chosen
moment (`BGJOBD_TEST_CLOCK=VIRTUAL_START,REAL_START,SPEED`, epoch seconds), so that a real
daemon goes through cron minutes in seconds. Restarted with the same value, a daemon goes
on along the same timeline."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Final

TEST_CLOCK_ENV: Final = "BGJOBD_TEST_CLOCK"


@dataclass(frozen=True)
class Clock:
    virtual_start: float = 0.0
    real_start: float = 0.0
    speed: float = 1.0

    def now(self) -> float:
        return self.virtual_start + (time.time() - self.real_start) * self.speed

    def real_seconds(self, seconds: float) -> float:
        """How long `seconds` on this clock take on the wall clock."""
        return seconds / self.speed


WALL: Final = Clock()


def clock_from_env() -> Clock:
    value = os.environ.get(TEST_CLOCK_ENV)
    if not value:
        return WALL
    virtual, real, speed = (float(part) for part in value.split(","))
    if speed <= 0:
        raise ValueError(f"{TEST_CLOCK_ENV}: the speed must be over 0")
    return Clock(virtual, real, speed)
