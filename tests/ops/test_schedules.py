"""Cron schedules: each tick one job, exactly once, by the store's unique key.

The schedule module runs in-process on a real SQLite store with a fake clock where minutes
must pass; one real daemon runs a `* * * * *` schedule on a fast test clock."""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bgjobd import submission
from bgjobd.clock import TEST_CLOCK_ENV, Clock
from bgjobd.schedules import Schedules, key_prefix, schedules_of, tick_key, tick_of_key
from bgjobd.store.base import KeyTaken
from bgjobd.store.sqlite import SQLiteStore
from bgjobs.config import Config, parse_settings
from bgjobs.errors import ConfigError
from bgjobs.model import JobSpec
from tests.support.waiting import wait_for
from tests.support.workspace import Workspace

START = datetime(2026, 1, 5, 9, 0, 30, tzinfo=UTC)
STAMP = "%Y-%m-%dT%H:%M:%SZ"


class FakeClock(Clock):
    """A clock the test moves by hand."""

    def __init__(self, at: datetime) -> None:
        super().__init__()
        object.__setattr__(self, "moment", at.timestamp())

    def now(self) -> float:
        return float(self.__dict__["moment"])

    def set(self, at: datetime) -> None:
        object.__setattr__(self, "moment", at.timestamp())


def config_of(schedule: str) -> Config:
    return Config(
        parse_settings('allowed_jobs = {Echo = ["handle"]}\n' + schedule, source="test"), None
    )


EVERY_MINUTE = config_of(
    '[schedules.tick]\ncron = "* * * * *"\nclass = "Echo"\nmethod = "handle"\nparams = [1]\n'
)


def submitter(store: SQLiteStore, config: Config) -> Callable[..., None]:
    """What the daemon's engine does with a submit, on this store: insert, and a key that
    is taken means the job is there already."""

    def submit(spec: JobSpec, done: Callable[[BaseException | None], None]) -> None:
        rows = submission.build(config, spec, time.time(), "test")
        with contextlib.suppress(KeyTaken):
            store.add(rows)
        store.commit()
        done(None)

    return submit


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "bgjobs.db"


@pytest.fixture
def store(db: Path) -> Iterator[SQLiteStore]:
    opened = SQLiteStore(db)
    yield opened
    opened.close()


def schedules(store: SQLiteStore, config: Config, clock: FakeClock) -> Schedules:
    return Schedules(
        config,
        submit=submitter(store, config),
        latest_key=store.latest_key,
        clock=clock,
        say=lambda message: None,
    )


def ticks_in(store: SQLiteStore, name: str) -> list[str]:
    prefix = key_prefix(name)
    rows = store._db.execute(  # the test reads every key of the schedule
        "SELECT idempotency_key FROM jobs WHERE idempotency_key LIKE ? ORDER BY id",
        (prefix + "%",),
    ).fetchall()
    return [str(key)[len(prefix) :] for (key,) in rows]


def minutes(first: datetime, count: int) -> list[str]:
    return [
        tick_key("x", first + timedelta(minutes=n))[len(key_prefix("x")) :] for n in range(count)
    ]


def walk(runner: Schedules, clock: FakeClock, start: datetime, end: datetime) -> None:
    """Move the clock in 7-second steps, running what is due at each."""
    moment = start
    while moment <= end:
        clock.set(moment)
        runner.run_due()
        moment += timedelta(seconds=7)


def test_every_minute_is_one_job_per_minute_across_a_restart(db: Path) -> None:
    clock = FakeClock(START)
    first = SQLiteStore(db)
    walk(schedules(first, EVERY_MINUTE, clock), clock, START, START + timedelta(minutes=3))
    first.close()
    # A restart: a new store connection and a new scheduler, nothing kept in memory.
    again = SQLiteStore(db)
    resumed = START + timedelta(minutes=3, seconds=10)
    walk(schedules(again, EVERY_MINUTE, clock), clock, resumed, START + timedelta(minutes=6))
    assert ticks_in(again, "tick") == minutes(datetime(2026, 1, 5, 9, 1, tzinfo=UTC), 6)
    again.close()


def test_two_submitters_of_the_same_ticks_make_one_job_each(db: Path) -> None:
    """Two schedulers on one store (as two daemons would be) racing over the same minutes:
    the store's unique key keeps one job per tick."""
    clock = FakeClock(START)
    one, two = SQLiteStore(db), SQLiteStore(db)
    runners = [schedules(one, EVERY_MINUTE, clock), schedules(two, EVERY_MINUTE, clock)]
    moment = START
    while moment <= START + timedelta(minutes=4):
        clock.set(moment)
        for runner in runners:
            runner.run_due()
        moment += timedelta(seconds=20)
    assert ticks_in(one, "tick") == minutes(datetime(2026, 1, 5, 9, 1, tzinfo=UTC), 4)
    one.close()
    two.close()


@pytest.mark.parametrize(("missed", "expected"), [("skip", 0), ("run_once", 1)])
def test_after_a_downtime_of_several_ticks(store: SQLiteStore, missed: str, expected: int) -> None:
    config = config_of(
        '[schedules.tick]\ncron = "*/5 * * * *"\nclass = "Echo"\nmethod = "handle"\n'
        f'missed = "{missed}"\n'
    )
    clock = FakeClock(START)
    walk(schedules(store, config, clock), clock, START, START + timedelta(minutes=5))
    assert len(ticks_in(store, "tick")) == 1  # 09:05
    # Down from 09:06 to 09:33: the ticks of 09:10 ... 09:30 are missed.
    back = datetime(2026, 1, 5, 9, 33, tzinfo=UTC)
    clock.set(back)
    restarted = schedules(store, config, clock)
    restarted.run_due()
    restarted.run_due()
    after = ticks_in(store, "tick")
    assert len(after) == 1 + expected
    if expected:
        assert after[-1] == "2026-01-05T09:30:00Z"  # one job, for the latest missed tick
    # And it goes on with the next tick as usual.
    walk(restarted, clock, back, datetime(2026, 1, 5, 9, 35, 10, tzinfo=UTC))
    assert ticks_in(store, "tick")[-1] == "2026-01-05T09:35:00Z"
    assert len(ticks_in(store, "tick")) == 2 + expected


def test_a_schedule_changed_by_a_reload_begins_at_its_next_tick(store: SQLiteStore) -> None:
    """Under its old form nothing was missed: a run_once schedule changed at 09:33 does not
    make up for 09:10 ... 09:30, and runs at its new next tick."""

    def every(minutes: int) -> Config:
        return config_of(
            f'[schedules.tick]\ncron = "*/{minutes} * * * *"\nclass = "Echo"\n'
            'method = "handle"\nmissed = "run_once"\n'
        )

    clock = FakeClock(START)
    runner = schedules(store, every(5), clock)
    walk(runner, clock, START, START + timedelta(minutes=5))
    clock.set(datetime(2026, 1, 5, 9, 33, tzinfo=UTC))
    runner.reconfigure(every(10))
    runner.run_due()
    assert ticks_in(store, "tick") == ["2026-01-05T09:05:00Z"]
    walk(
        runner,
        clock,
        datetime(2026, 1, 5, 9, 33, tzinfo=UTC),
        datetime(2026, 1, 5, 9, 41, tzinfo=UTC),
    )
    assert ticks_in(store, "tick") == ["2026-01-05T09:05:00Z", "2026-01-05T09:40:00Z"]


BERLIN_ZONE = ZoneInfo("Europe/Berlin")
BERLIN = config_of(
    '[schedules.night]\ncron = "30 2 * * *"\ntimezone = "Europe/Berlin"\n'
    'class = "Echo"\nmethod = "handle"\n'
)


@pytest.mark.parametrize(
    ("start", "days"),
    [
        (datetime(2026, 3, 27, 12, tzinfo=UTC), 4),  # 29 March: 02:00 -> 03:00
        (datetime(2026, 10, 23, 12, tzinfo=UTC), 4),  # 25 October: 03:00 -> 02:00
    ],
)
def test_daylight_saving_neither_skips_nor_doubles(
    store: SQLiteStore, start: datetime, days: int
) -> None:
    clock = FakeClock(start)
    runner = schedules(store, BERLIN, clock)
    moment = start
    while moment <= start + timedelta(days=days):
        clock.set(moment)
        runner.run_due()
        moment += timedelta(minutes=5)
    ticks = ticks_in(store, "night")
    local_days = [
        datetime.strptime(t, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).astimezone(BERLIN_ZONE)
        for t in ticks
    ]
    assert [d.date() for d in local_days] == [
        (start + timedelta(days=n)).date() for n in range(1, days + 1)
    ]


def test_a_timer_a_hair_early_wakes_again_for_its_tick(store: SQLiteStore) -> None:
    """The timer fires 1 ms before 09:02 and finds nothing due; the pass takes 2 ms. The
    next wake is now, for 09:02, not at 09:03 (which left 09:02 a minute late, past its
    grace, skipped: the real daemon's fast-clock test lost a tick so)."""
    clock = FakeClock(datetime(2026, 1, 5, 9, 1, 59, 999000, tzinfo=UTC))
    runner = schedules(store, EVERY_MINUTE, clock)
    runner.run_due()  # the schedule begins: its first tick is 09:02
    looked_at = runner.run_due()
    clock.set(datetime(2026, 1, 5, 9, 2, 0, 1000, tzinfo=UTC))
    wait = runner.next_wake(looked_at)
    assert wait is not None and wait <= 0
    runner.run_due()
    assert ticks_in(store, "tick") == ["2026-01-05T09:02:00Z"]


BERLIN_RUN_ONCE = config_of(
    '[schedules.night]\ncron = "30 2 * * *"\ntimezone = "Europe/Berlin"\n'
    'class = "Echo"\nmethod = "handle"\nmissed = "run_once"\n'
)


@pytest.mark.parametrize("first_look", ["00:45", "01:10", "01:45", "02:10"])
def test_a_night_first_looked_at_late_in_the_autumn_fold_runs_that_night(
    store: SQLiteStore, first_look: str
) -> None:
    """The daemon was down over 02:30 on 25 October (00:30 UTC) and looks first at
    `first_look` UTC, up to inside the repeated hour: `run_once` runs that night's tick,
    not the one before (which ran)."""
    previous = datetime(2026, 10, 24, 0, 30, tzinfo=UTC)
    submitter(store, BERLIN_RUN_ONCE)(job_of(BERLIN_RUN_ONCE, previous), lambda _: None)
    hour, minute = map(int, first_look.split(":"))
    clock = FakeClock(datetime(2026, 10, 25, hour, minute, tzinfo=UTC))
    schedules(store, BERLIN_RUN_ONCE, clock).run_due()
    assert ticks_in(store, "night") == ["2026-10-24T00:30:00Z", "2026-10-25T00:30:00Z"]


def job_of(config: Config, tick: datetime) -> JobSpec:
    """The job the configuration's one schedule makes for `tick`."""
    return schedules_of(config)[0].job(tick)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('cron = "61 * * * *"\nclass = "Echo"\nmethod = "handle"', "schedules.bad.cron"),
        ('cron = "* * * *"\nclass = "Echo"\nmethod = "handle"', "schedules.bad.cron"),
        ('cron = "@reboot"\nclass = "Echo"\nmethod = "handle"', "schedules.bad.cron"),
        (
            'cron = "@daily"\ntimezone = "Mars/Olympus"\nclass = "Echo"\nmethod = "handle"',
            "schedules.bad.timezone",
        ),
        ('cron = "@daily"\nclass = "Sleep"\nmethod = "handle"', "schedules.bad: Sleep::handle"),
        ('cron = "@daily"\nclass = "Echo"\nmethod = "other"', "schedules.bad: Echo::other"),
        ('cron = "@daily"\nclass = "Echo"\nmethod = "handle"\nmissed = "all"', "missed"),
        ('cron = "@daily"\nmethod = "handle"', "schedules.bad"),
        ('cron = "@daily"\nclass = "Echo"\nmethod = "handle"\nparams = 3', "params"),
    ],
)
def test_configuration_errors_name_the_key(table: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("::", "::")):
        config_of("[schedules.bad]\n" + table)


def test_named_expressions_are_accepted() -> None:
    config = config_of('[schedules.h]\ncron = "@hourly"\nclass = "Echo"\nmethod = "handle"\n')
    runner = Schedules(
        config,
        submit=lambda spec, done: None,
        latest_key=lambda prefix: None,
        clock=FakeClock(START),
        say=lambda message: None,
    )
    assert runner.states()[0].next_run == datetime(2026, 1, 5, 10, 0, tzinfo=UTC)


# The real daemon --------------------------------------------------------------------------


def test_a_real_daemon_runs_every_minute_on_a_fast_clock(workspace: Workspace) -> None:
    """The daemon's clock runs 6 times faster (a minute every 10 s): its timer wakes at
    each tick, each tick is one job, also across a restart (the next daemon's clock goes
    on from the last tick, so a slow stop cannot push the next tick past its grace),
    and `schedules` tells next and last."""
    workspace.write_config(
        {
            "schedules": {
                "tick": {"cron": "* * * * *", "class": "Echo", "method": "handle", "params": [7]}
            }
        }
    )
    virtual, real = datetime(2026, 1, 5, 9, 0, 50, tzinfo=UTC).timestamp(), time.time()
    workspace.env[TEST_CLOCK_ENV] = f"{virtual},{real},6"
    daemon = workspace.start_daemon()

    def keys() -> list[str]:
        return sorted(
            job.key or ""
            for job in workspace.client().list_jobs(limit=100).jobs
            if (job.key or "").startswith("schedule:tick:")
        )

    wait_for(lambda: len(keys()) >= 2, timeout=60, what="two ticks")
    assert daemon.stop() == 0
    # The next daemon's clock goes on from just after the last tick made: the next tick is
    # due 10 s after its start and stays within its grace for 10 s more, however long
    # this one took to stop on a loaded machine.
    stopped_store = SQLiteStore(workspace.storage / "bgjobs.db")
    try:
        last_key = stopped_store.latest_key(key_prefix("tick"))
    finally:
        stopped_store.close()
    assert last_key is not None
    resumed = tick_of_key(last_key).timestamp() + 1
    workspace.env[TEST_CLOCK_ENV] = f"{resumed},{time.time()},6"
    workspace.start_daemon()
    before = len(keys())
    wait_for(lambda: len(keys()) >= before + 2, timeout=60, what="two more ticks")
    ticks = keys()
    # Consecutive minutes, none twice, from the first tick after the daemon started.
    first = datetime.strptime(ticks[0].split(":", 2)[2], "%Y-%m-%dT%H:%M:%SZ")
    expected = [
        tick_key("tick", first.replace(tzinfo=UTC) + timedelta(minutes=n))
        for n in range(len(ticks))
    ]
    assert ticks == expected
    listed = workspace.client().schedules()
    assert [s.name for s in listed] == ["tick"]
    assert listed[0].last_run is not None and listed[0].next_run is not None
    assert listed[0].next_run > listed[0].last_run
    shown = workspace.bgjobctl("schedules")
    assert shown.returncode == 0 and "tick" in shown.stdout


@pytest.mark.parametrize(
    ("evening", "night_tick"),
    [
        # 29 March: 02:00 CET -> 03:00 CEST, 02:30 does not exist: it runs at 03:00 CEST.
        (datetime(2026, 3, 28, 22, tzinfo=UTC), datetime(2026, 3, 29, 1, 0, tzinfo=UTC)),
        # 25 October: 03:00 CEST -> 02:00 CET, 02:30 comes twice: it runs the first time.
        (datetime(2026, 10, 24, 22, tzinfo=UTC), datetime(2026, 10, 25, 0, 30, tzinfo=UTC)),
    ],
    ids=["spring", "autumn"],
)
def test_a_real_daemon_runs_a_berlin_night_once_across_daylight_saving(
    workspace: Workspace, evening: datetime, night_tick: datetime
) -> None:
    """A nightly 02:30 Europe/Berlin schedule on a real daemon whose clock runs 1,500 times
    faster (an hour every 2.4 s), from 22:00 UTC the evening before until the change is
    over; beside it a quarter-hourly schedule wakes the daemon's scheduler all night,
    inside the repeated hour too. The night has one job, at the tick cron's rules give.
    The night before ran (its job is in the store) and `missed = "run_once"`, so however
    late the daemon first looks (a slow start; at this speed the grace is 40 ms), it is
    this night's job that runs, never a second one and never the night before's again."""
    night = {"cron": "30 2 * * *", "class": "Echo", "method": "handle", "missed": "run_once"}
    quarter = {"cron": "*/15 * * * *", "class": "Echo", "method": "handle"}
    workspace.write_config(
        {
            "schedules": {
                "night": {**night, "timezone": "Europe/Berlin"},
                "quarter": {**quarter, "timezone": "Europe/Berlin"},
            }
        }
    )
    night_before = schedules_of(BERLIN_RUN_ONCE)[0].cron.last_at_or_before(evening)
    assert night_before is not None
    workspace.storage.mkdir(parents=True, exist_ok=True)
    seeded = SQLiteStore(workspace.storage / "bgjobs.db")
    try:
        submitter(seeded, BERLIN_RUN_ONCE)(job_of(BERLIN_RUN_ONCE, night_before), lambda _: None)
    finally:
        seeded.close()
    workspace.env[TEST_CLOCK_ENV] = f"{evening.timestamp()},{time.time()},1500"
    workspace.start_daemon()

    def keys(name: str) -> list[str]:
        jobs = workspace.client().list_jobs(limit=1000).jobs
        return sorted(job.key for job in jobs if job.key and job.key.startswith(key_prefix(name)))

    # The scheduler went through the night: a quarter-hourly tick after the change is over.
    over = tick_key("quarter", night_tick.replace(hour=3, minute=0))
    wait_for(lambda: any(key > over for key in keys("quarter")), timeout=60, what="the night")
    assert keys("night") == [tick_key("night", night_before), tick_key("night", night_tick)]


def test_reload_and_the_dashboard_show_changed_schedules(workspace: Workspace) -> None:
    """SIGHUP takes a new schedule (and refuses a bad one, keeping the running ones); the
    jobs page lists them."""
    from tests.dashboard.support import start_dashboard

    first = {"cron": "@daily", "class": "Echo", "method": "handle"}
    dashboard = start_dashboard(workspace, {"schedules": {"nightly": first}})
    client = workspace.client()
    assert [s.name for s in client.schedules()] == ["nightly"]
    hourly = {"cron": "0 * * * *", "class": "Echo", "method": "handle", "timezone": "Asia/Tokyo"}
    workspace.write_config(
        {
            "dashboard": workspace.settings["dashboard"],
            "schedules": {"nightly": first, "hourly": hourly},
        }
    )
    dashboard.daemon.signal(signal.SIGHUP)
    wait_for(lambda: len(client.schedules()) == 2, what="the reloaded schedules")
    listed = {s.name: s for s in client.schedules()}
    assert listed["hourly"].timezone == "Asia/Tokyo" and listed["hourly"].next_run is not None
    assert listed["hourly"].next_run.minute == 0
    workspace.write_config(
        {
            "dashboard": workspace.settings["dashboard"],
            "schedules": {"bad": {"cron": "@daily", "class": "Nope", "method": "handle"}},
        }
    )
    dashboard.daemon.signal(signal.SIGHUP)
    wait_for(lambda: "schedules.bad" in workspace.error_log(), what="the refused reload")
    assert sorted(s.name for s in client.schedules()) == ["hourly", "nightly"]
    page = dashboard.http().get("/dashboard/jobs")
    assert page.status == 200
    assert "Schedules" in page.text and "hourly" in page.text and "Asia/Tokyo" in page.text


def test_a_real_daemon_after_a_downtime_of_several_ticks(workspace: Workspace) -> None:
    """Two `*/5` schedules, `run_once` and `skip`, on a real daemon that stops after the
    09:05 tick and starts again at 09:33 (its test clock set forward): `run_once` runs one
    job for 09:10 ... 09:30 (under 09:30's key), `skip` none. Both go on from the store's
    keys, nothing kept across the restart. One pass of the daemon's scheduler submits
    every schedule's due ticks, so once run_once's job is there, skip's pass is done too."""
    every_five = {"cron": "*/5 * * * *", "class": "Echo", "method": "handle"}
    workspace.write_config(
        {
            "schedules": {
                "once": {**every_five, "missed": "run_once"},
                "skip": {**every_five, "missed": "skip"},
            }
        }
    )
    first_start = datetime(2026, 1, 5, 9, 3, 30, tzinfo=UTC)
    workspace.env[TEST_CLOCK_ENV] = f"{first_start.timestamp()},{time.time()},15"
    daemon = workspace.start_daemon()

    def keys() -> dict[str, list[str]]:
        found: dict[str, list[str]] = {"once": [], "skip": []}
        for job in workspace.client().list_jobs(limit=100).jobs:
            if job.key:
                name, stamp = job.key.split(":", 2)[1:]
                found[name].append(stamp)
        return {name: sorted(stamps) for name, stamps in found.items()}

    # The first tick after the start (09:05 unless the start took over 6 s), on time.
    wait_for(lambda: all(keys().values()), timeout=30, what="a tick of both")
    ran = keys()  # the next tick is 20 s away
    assert daemon.stop() == 0
    assert ran["once"] == ran["skip"]
    last = datetime.strptime(ran["once"][-1], STAMP).replace(tzinfo=UTC)

    # Down for 28 minutes: the five ticks after `last` were missed.
    back = last + timedelta(minutes=28)
    workspace.env[TEST_CLOCK_ENV] = f"{back.timestamp()},{time.time()},1"
    workspace.start_daemon()
    wait_for(lambda: len(keys()["once"]) == len(ran["once"]) + 1, what="run_once's one job")
    assert keys() == {
        "once": [*ran["once"], (last + timedelta(minutes=25)).strftime(STAMP)],
        "skip": ran["skip"],
    }
