"""Formatting for people: durations, ticking times, UTC times, JSON values.

`dashboard.js` formats ticking times with the same rules (its `fmtAge` and `relative`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final

import msgspec

PARAMS_SHOWN: Final = 160
"""Characters of a job's params shown in a table cell; the detail page shows them all."""


def fmt_duration(seconds: float | None) -> str:
    """A measured duration, down to milliseconds."""
    if seconds is None:
        return "—"
    seconds = max(seconds, 0.0)
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    return _minutes_or_more(int(seconds))


def fmt_age(seconds: float) -> str:
    """A ticking time (elapsed, due in, ago) in whole seconds; `dashboard.js` has a twin."""
    whole = max(int(seconds), 0)
    return f"{whole}s" if whole < 60 else _minutes_or_more(whole)


def _minutes_or_more(whole: int) -> str:
    """A minute or longer, in its two largest units: "3m 05s", "2h 07m", "4d 01h"."""
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours:02d}h"


def relative(kind: str, moment: datetime, now: float) -> str:
    offset = now - moment.timestamp()
    if kind == "until":
        return f"in {fmt_age(-offset)}" if offset < 0 else "due now"
    if kind == "ago":
        return f"{fmt_age(offset)} ago"
    return fmt_age(offset)


def fmt_time(moment: datetime | None) -> str:
    """UTC, like the log files, so that times on the page and in the logs compare."""
    if moment is None:
        return "—"
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat()


def to_json_text(value: Any, *, indent: int = 0) -> str:
    """Params and results are msgspec values; anything JSON cannot hold is shown by repr."""
    try:
        encoded = msgspec.json.encode(value)
    except (TypeError, msgspec.EncodeError):
        return repr(value)
    return msgspec.json.format(encoded, indent=indent).decode() if indent else encoded.decode()


def shorten(text: str, limit: int = PARAMS_SHOWN) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
