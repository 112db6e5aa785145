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
        try:
            tick = next(CronSim(self.expression, moment.astimezone(self.zone)))
        except StopIteration:
            return None
        return tick.astimezone(UTC)

    def last_at_or_before(self, moment: datetime) -> datetime | None:
        """The latest tick at or before `moment` (None if there is none in 50 years).

        Found by walking forward from ever earlier starts, so that it agrees with
        `next_after` about every tick: cronsim's reverse walk compares wall-clock times,
        and inside the autumn's repeated hour it answered the day before for a tick
        already run that night (a daily 02:30 in Berlin, asked at 02:10 the second time)."""
        span = _FIRST_SPAN
        while span <= _HORIZON and moment - datetime.min.replace(tzinfo=UTC) > span:
            latest = None
            for tick in CronSim(self.expression, (moment - span).astimezone(self.zone)):
                if tick.astimezone(UTC) > moment:
                    break
                latest = tick
            if latest is not None:
                return latest.astimezone(UTC)
            span *= 2
        return None


_FIRST_SPAN: Final = timedelta(minutes=2)
"""The first look back: the most frequent schedule (every minute) has a tick in it."""
_HORIZON: Final = timedelta(days=366 * 50)
