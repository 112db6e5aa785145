"""Times in range, in-process: delays, due times, backoff, `Retry(delay=)`, configuration
floats and the scheduler's own guard."""

from __future__ import annotations

import asyncio
import math
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from bgjobd.duetimer import DueTimer
from bgjobd.retries import Directive, RetryPolicy, decide
from bgjobd.store.sqlite import SQLiteStore
from bgjobs.config import Config, parse_settings
from bgjobs.errors import ConfigError
from bgjobs.model import ErrorInfo
from bgjobs.settings import Settings
from bgjobs.signals import InvalidRetryDelay, Retry
from bgjobs.times import MAX_DELAY, delay_problem, run_at_problem

BAD_DELAYS: list[object] = [math.nan, math.inf, -math.inf, 1e308, -1, 10**400, "5", True]


@pytest.mark.parametrize("value", BAD_DELAYS, ids=repr)
def test_bad_delays_are_named(value: object) -> None:
    assert delay_problem(value)


@pytest.mark.parametrize("value", [0, 0.5, 60, MAX_DELAY])
def test_good_delays_pass(value: float) -> None:
    assert delay_problem(value) is None


def test_due_times_between_1970_and_9999() -> None:
    assert run_at_problem(datetime(2030, 1, 1, tzinfo=UTC)) is None
    assert run_at_problem(datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)) is None
    assert run_at_problem(datetime(1, 1, 1, tzinfo=UTC))
    assert run_at_problem(datetime(1969, 12, 31, tzinfo=UTC))
    west = timezone(timedelta(hours=-5))
    assert run_at_problem(datetime(9999, 12, 31, 23, 0, tzinfo=west)), "past 9999 in UTC"
    assert run_at_problem(datetime(2030, 1, 1)) == "must carry a timezone"


@pytest.mark.parametrize("value", [math.nan, math.inf, 1e308, -1, 10**400, "soon"], ids=repr)
def test_retry_refuses_a_bad_delay(value: object) -> None:
    with pytest.raises(InvalidRetryDelay, match=r"10 years|number of seconds"):
        Retry("again", delay=value)  # type: ignore[arg-type]
    retry = Retry("again", delay=5)
    with pytest.raises(InvalidRetryDelay):
        retry.delay = value  # type: ignore[assignment]
    assert retry.delay == 5.0


def test_exponential_backoff_never_overflows() -> None:
    for jitter in (False, True):
        policy = RetryPolicy(3000, 5.0, "exponential", None, jitter)
        delays = [policy.delay_after(attempt) for attempt in (1, 2, 60, 2000, 10**9)]
        assert all(0 <= delay <= MAX_DELAY for delay in delays), delays
    capped = RetryPolicy(3000, 5.0, "exponential", 100.0, False)
    assert [capped.delay_after(n) for n in (1, 2, 3, 2000)] == [5.0, 10.0, 20.0, 100.0]


def test_a_tampered_retry_delay_is_replaced_by_the_usual_one() -> None:
    config = Config(Settings(retry_attempts=2, retry_delay_seconds=3.0), None)
    error = ErrorInfo(type="Retry", message="")
    for bad in (math.nan, math.inf, 1e308, -1.0):
        decision = decide(config, "Job", 1, error, Directive(retry=True, delay=bad))
        assert decision.retry and decision.delay == 3.0
        assert "invalid delay" in decision.describe()


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("retry_delay_seconds = {v}", "retry_delay_seconds"),
        ("max_retry_delay = {v}", "max_retry_delay"),
        ("max_execution_time = {v}", "max_execution_time"),
        ("[daemon]\nkill_grace = {v}", "daemon.kill_grace"),
        ("[daemon]\nshutdown_timeout = {v}", "daemon.shutdown_timeout"),
        ('allowed_jobs = {{A = ["b"]}}\n[jobs.A]\ntimeout = {v}', "jobs.A.timeout"),
        (
            "[exceptions.OSError]\nretry_delay_seconds = {v}",
            "exceptions.OSError.retry_delay_seconds",
        ),
    ],
)
@pytest.mark.parametrize("value", ["inf", "nan", "-inf", "1e308"])
def test_config_refuses_absurd_seconds_naming_the_key(text: str, key: str, value: str) -> None:
    with pytest.raises(ConfigError, match=f": {key}: "):
        parse_settings(text.format(v=value))


def test_the_due_timer_clamps_a_due_time_it_cannot_reach(tmp_path: Path) -> None:
    """A NaN due time (never due by any comparison) fires at once rather than never; an
    infinite one is armed for the latest time there is, not spun on."""
    store = SQLiteStore(tmp_path / "bgjobs.db")
    fired: list[float] = []

    async def scenario() -> None:
        timer = DueTimer(store, lambda: fired.append(time.monotonic()))
        timer.refresh()
        try:
            timer.add(math.inf)
            assert not fired
            timer.add(math.nan)
            for _ in range(200):
                if fired:
                    break
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.05)  # the refresh after firing arms nothing: the store is empty
        finally:
            timer.stop()

    try:
        asyncio.run(scenario())
    finally:
        store.close()
    assert len(fired) == 1
