"""Cron on a time zone's wall clock: the latest tick at or before a moment agrees with the
next tick after it, across the spring gap and the autumn's repeated hour."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bgjobs.cron import Cron

NIGHTLY_BERLIN = Cron.parse("30 2 * * *", "Europe/Berlin")
EXPRESSIONS = ["30 2 * * *", "* * * * *", "*/7 1-3 * * *", "0 * * * 1", "15 3 1 * *", "0 0 29 2 *"]
ZONES = ["Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "UTC"]


@pytest.mark.parametrize(
    ("moment", "latest"),
    [
        # 25 October 2026: 03:00 CEST -> 02:00 CET; 02:30 runs once, at 00:30 UTC.
        (datetime(2026, 10, 25, 0, 29), datetime(2026, 10, 24, 0, 30)),
        (datetime(2026, 10, 25, 0, 30), datetime(2026, 10, 25, 0, 30)),
        (datetime(2026, 10, 25, 1, 10), datetime(2026, 10, 25, 0, 30)),  # 02:10 again
        (datetime(2026, 10, 25, 1, 45), datetime(2026, 10, 25, 0, 30)),  # 02:45 again
        # 29 March 2026: 02:00 CET -> 03:00 CEST; 02:30 does not exist, runs at 03:00.
        (datetime(2026, 3, 29, 0, 59), datetime(2026, 3, 28, 1, 30)),
        (datetime(2026, 3, 29, 1, 10), datetime(2026, 3, 29, 1, 0)),
    ],
)
def test_the_latest_nightly_tick_around_daylight_saving(moment: datetime, latest: datetime) -> None:
    assert NIGHTLY_BERLIN.last_at_or_before(moment.replace(tzinfo=UTC)) == latest.replace(
        tzinfo=UTC
    )


@settings(max_examples=300, deadline=None)
@given(
    expression=st.sampled_from(EXPRESSIONS),
    zone=st.sampled_from(ZONES),
    moment=st.datetimes(
        min_value=datetime(2025, 1, 1), max_value=datetime(2030, 12, 31), timezones=st.just(UTC)
    ),
)
def test_the_latest_tick_is_a_tick_and_none_comes_between(
    expression: str, zone: str, moment: datetime
) -> None:
    cron = Cron.parse(expression, zone)
    latest = cron.last_at_or_before(moment)
    assert latest is not None and latest <= moment
    assert cron.next_after(latest - timedelta(microseconds=1)) == latest  # a tick indeed
    following = cron.next_after(latest)
    assert following is not None and following > moment  # and the latest one
