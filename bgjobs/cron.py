"""Cron expressions on a time zone's wall clock, evaluated by cronsim (Debian cron's rules:
a tick in the hour skipped in spring runs when the clock jumps, a tick in the hour repeated
in autumn runs once). Ticks are handed out as aware UTC datetimes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

NAMED: Final = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
"""The names Vixie cron accepts for common expressions (cronsim takes only five fields);
`@reboot` is not a schedule of times and is refused."""


@dataclass(frozen=True)
class Cron:
    expression: str
    zone: ZoneInfo

    @classmethod
    def parse(cls, expression: str, timezone: str) -> Cron:
        """ValueError saying what is wrong with the expression or the zone."""
        try:
            zone = ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{timezone!r} is not an IANA time zone name") from None
        fields = NAMED.get(expression.strip().lower(), expression)
        if len(fields.split()) != 5:
            raise ValueError(
                f"{expression!r} is not a cron expression (five fields: minute hour day month "
                "weekday, or one of " + ", ".join(NAMED) + ")"
            )
        try:
            CronSim(fields, datetime.now(zone))
        except CronSimError as exc:
            raise ValueError(f"{expression!r} is not a cron expression: {exc}") from None
        return cls(fields, zone)

    def next_after(self, moment: datetime) -> datetime | None:
        """The first tick strictly after `moment` (None if there is none in 50 years)."""
        return self._step(moment, reverse=False)

    def last_at_or_before(self, moment: datetime) -> datetime | None:
        """The latest tick at or before `moment` (None if there is none in 50 years)."""
        return self._step(moment + _EPSILON, reverse=True)

    def _step(self, moment: datetime, *, reverse: bool) -> datetime | None:
        try:
            tick = next(CronSim(self.expression, moment.astimezone(self.zone), reverse=reverse))
        except StopIteration:
            return None
        return tick.astimezone(UTC)


_EPSILON: Final = timedelta(microseconds=1)
