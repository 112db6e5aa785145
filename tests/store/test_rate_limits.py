"""Rate limits and limit keys in the store (each backend): a rate-limited class starts at
most N jobs within any window of its length, its jobs waiting in order meanwhile; the
store says when the next start frees; `limit_key` makes limits and rates count per key.
Times are given to the store (its `now`), so that windows are crossed without waiting."""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path

import pytest

from bgjobd.store.base import FinishedAttempt, RateUse, Store
from bgjobd.store.ratewindow import KEEP_EXTRA_SECONDS
from bgjobs.model import JobState, Outcome
from bgjobs.rates import LONGEST_WINDOW, Rate
from tests.store import racers
from tests.store.support import StoreAddress, address_of, new_job, open_store

NO_LIMITS: dict[str, int] = {}
ROUNDING = 2e-6
"""Start times come back as datetimes (whole microseconds): a gap read back may be this
much shorter than the one the store counted."""


def finish(store: Store, job_id: int) -> None:
    end = FinishedAttempt(1, Outcome.SUCCEEDED, time.time(), 0.0)
    store.finish_attempt(job_id, end, JobState.SUCCEEDED)


def claim_all(
    store: Store, now: float, rates: dict[str, Rate], limits: dict[str, int]
) -> list[int]:
    claimed = []
    while (job := store.claim_next("n1", 1, now, limits, rates)) is not None:
        claimed.append(job.id)
    store.commit()
    return claimed


def test_a_rate_starts_n_per_window_in_order_and_says_when_the_next_frees(store: Store) -> None:
    rates = {"Rated": Rate(3, 1.0)}
    rated = [store.add([new_job("Rated", params=[n])])[0] for n in range(7)]
    free = store.add([new_job("Free")])[0]
    t = time.time()
    assert claim_all(store, t, rates, NO_LIMITS) == [*rated[:3], free]
    assert store.next_rate_slot(rates, t) == pytest.approx(t + 1.0)
    # Still within the window: nothing, even much later in it.
    assert claim_all(store, t + 0.999, rates, NO_LIMITS) == []
    # A window later the next three, in their order.
    assert claim_all(store, t + 1.0001, rates, NO_LIMITS) == rated[3:6]
    assert store.next_rate_slot(rates, t + 1.0001) == pytest.approx(t + 2.0001)
    assert claim_all(store, t + 2.5, rates, NO_LIMITS) == rated[6:]
    assert store.next_rate_slot(rates, t + 2.5) is None  # nothing waits for the rate


def test_a_start_after_a_later_start_still_counts_it(store: Store, peer: Store) -> None:
    """A claimer whose clock was read before another's (it waited for the lock) counts the
    other's start: no window ever holds more than the rate."""
    rates = {"Rated": Rate(1, 1.0)}
    store.add([new_job("Rated")])
    store.add([new_job("Rated")])
    store.commit()
    t = time.time()
    assert peer.claim_next("b", 1, t + 0.5, NO_LIMITS, rates) is not None
    peer.commit()
    assert store.claim_next("a", 1, t, NO_LIMITS, rates) is None
    store.commit()


def test_claim_by_id_honours_the_rate_and_the_limit_per_key(store: Store) -> None:
    """As `run_job.py` claims its own job."""
    rate = Rate(1, 60.0)
    first = store.add([new_job("Rated", limit_key="a")])[0]
    second = store.add([new_job("Rated", limit_key="a")])[0]
    other = store.add([new_job("Rated", limit_key="b")])[0]
    t = time.time()
    assert store.claim(first, "r1", 1, t, rate=rate) is not None
    assert store.claim(second, "r2", 2, t + 1, rate=rate) is None
    assert store.next_rate_slot({"Rated": rate}, t + 1, second) == pytest.approx(t + 60)
    assert store.claim(other, "r3", 3, t + 1, rate=rate) is not None
    assert store.claim(second, "r2", 2, t + 61, rate=rate) is not None
    store.commit()
    limited = [store.add([new_job("Limited", limit_key=key)])[0] for key in ("a", "a", "b")]
    assert store.claim(limited[0], "r", 1, t, limit=1) is not None
    assert store.claim(limited[1], "r", 1, t, limit=1) is None
    assert store.claim(limited[2], "r", 1, t, limit=1) is not None
    store.commit()


def test_limits_count_per_limit_key(store: Store) -> None:
    limits = {"Keyed": 1}
    a1, a2, b1, b2 = (store.add([new_job("Keyed", limit_key=key)])[0] for key in "aabb")
    t = time.time()
    assert claim_all(store, t, {}, limits) == [a1, b1]
    finish(store, a1)
    assert claim_all(store, t, {}, limits) == [a2]
    rates = {"Paced": Rate(1, 10.0)}
    paced = [store.add([new_job("Paced", limit_key=key)])[0] for key in "xxy"]
    assert claim_all(store, t, rates, limits) == [paced[0], paced[2]]
    assert claim_all(store, t + 10.001, rates, limits) == [paced[1]]
    finish(store, b1)
    assert claim_all(store, t + 20, rates, limits) == [b2]


def starts_left(store: Store) -> list[tuple[str, str]]:
    """The counted starts' (class, limit key), as every backend keeps them."""
    rows = store._db.execute(  # type: ignore[attr-defined]  # the test reads the table
        "SELECT class_name, limit_key FROM starts ORDER BY class_name, limit_key, started_at"
    ).fetchall()
    return [(str(name), str(key)) for name, key in rows]


def test_rate_use_tells_each_class_its_window(store: Store) -> None:
    """How full each class's window is now: its starts, its limit keys, those at their
    rate, the queued jobs they hold, and when the first frees a start."""
    rates = {"Rated": Rate(2, 10.0), "Keyed": Rate(1, 60.0), "Idle": Rate(5, 1.0)}
    rated = [store.add([new_job("Rated")])[0] for _ in range(5)]
    keyed = [store.add([new_job("Keyed", limit_key=key)])[0] for key in "aabbc"]
    t = time.time()
    assert store.rate_use(rates, t) == [
        RateUse("Rated", started=0, keys=0, full=0, held=0, next_slot=None),
        RateUse("Keyed", started=0, keys=0, full=0, held=0, next_slot=None),
        RateUse("Idle", started=0, keys=0, full=0, held=0, next_slot=None),
    ]
    assert store.claim_next("n", 1, t, NO_LIMITS, rates) is not None  # Rated
    store.commit()
    assert claim_all(store, t + 1, rates, NO_LIMITS) == [rated[1], keyed[0], keyed[2], keyed[4]]
    use = {u.class_name: u for u in store.rate_use(rates, t + 2)}
    assert use["Rated"] == RateUse("Rated", 2, 1, 1, held=3, next_slot=use["Rated"].next_slot)
    assert use["Rated"].next_slot == pytest.approx(t + 10)
    assert use["Keyed"] == RateUse("Keyed", 3, 3, 3, held=2, next_slot=use["Keyed"].next_slot)
    assert use["Keyed"].next_slot == pytest.approx(t + 61)
    assert use["Idle"] == RateUse("Idle", 0, 0, 0, 0, None)
    # Once the first start left Rated's window: one start, none full, nothing held.
    later = {u.class_name: u for u in store.rate_use(rates, t + 10.5)}
    assert later["Rated"] == RateUse("Rated", 1, 1, 0, 0, None)


def test_forget_starts_keeps_what_a_claim_still_counts(store: Store) -> None:
    """Starts no claim counts any more go: a rate-limited class's once out of its window
    (and the margin), any other class's (its rate removed, or a key that never started
    again) once out of the longest window there is."""
    t = time.time()
    for name, key in (("Fast", "a"), ("Fast", "b"), ("Dropped", "")):
        job = store.add([new_job(name, limit_key=key)])[0]
        assert store.claim(job, "n", 1, t, rate=Rate(100, 1.0)) is not None
    store.commit()
    rates = {"Fast": Rate(100, 1.0)}
    assert store.forget_starts(rates, t + 1.0, 100) == 0  # still in the window
    store.commit()
    just_out = t + 1.0 + KEEP_EXTRA_SECONDS
    assert store.forget_starts(rates, just_out, 1) == 1  # at most `limit` at a time
    assert store.forget_starts(rates, just_out, 100) == 1
    store.commit()
    assert starts_left(store) == [("Dropped", "")]
    assert store.forget_starts(rates, t + LONGEST_WINDOW, 100) == 0
    assert store.forget_starts(rates, t + LONGEST_WINDOW + KEEP_EXTRA_SECONDS, 100) == 1
    store.commit()
    assert starts_left(store) == []


# racing claimers -----------------------------------------------------------------------------

RATED_JOBS = 60
WINDOW = 0.25
STARTS = 5


@pytest.fixture(params=racers.MODES)
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def address(backend_name: str, tmp_path: Path) -> StoreAddress:
    where = address_of(backend_name, tmp_path)
    open_store(where).close()
    return where


def most_in_a_window(starts: list[float], window: float) -> int:
    """The most starts within one window's length (every window ending at a start: the
    store counts the starts later than `now - window`)."""
    starts = sorted(starts)
    return max(
        sum(1 for other in starts[: n + 1] if other > start - window + ROUNDING)
        for n, start in enumerate(starts)
    )


def test_racing_claimers_never_exceed_a_rate(
    mode: str, address: StoreAddress, tmp_path: Path
) -> None:
    """Four claimers, a class at 5 starts per 0.25 s, another at 5 per 0.25 s per key
    ("a" and "b"), and a free one: every job runs once, and no window holds more starts
    than the rate, per class and per key."""
    store = open_store(address)
    for n in range(RATED_JOBS):
        store.add([new_job("Rated", params=[n % 3])])
        store.add([new_job("Keyed", params=["ab"[n % 2]], limit_key="ab"[n % 2])])
        store.add([new_job("Free", params=[n])])
    store.commit()
    store.close()
    rates = {"Rated": (STARTS, WINDOW), "Keyed": (STARTS, WINDOW)}
    deadline = time.time() + 60
    reports = racers.race(
        mode,
        racers.claim_at_rate,
        [(address, f"node-{n}", rates, NO_LIMITS, deadline) for n in range(4)],
        timeout=70,
        workdir=tmp_path,
        processes=2,
    )
    groups: dict[str, list[float]] = defaultdict(list)
    for report in reports:
        for label, started in report:
            class_name, _, _param = label.partition(":")
            group = class_name if class_name != "Keyed" else label
            groups[group].append(started)
    assert {name: len(starts) for name, starts in groups.items()} == {
        "Rated": RATED_JOBS,
        "Keyed:a": RATED_JOBS // 2,
        "Keyed:b": RATED_JOBS // 2,
        "Free": RATED_JOBS,
    }
    assert most_in_a_window(groups["Rated"], WINDOW) == STARTS
    assert most_in_a_window(groups["Keyed:a"], WINDOW) == STARTS
    assert most_in_a_window(groups["Keyed:b"], WINDOW) == STARTS
    assert sum(1 for report in reports if report) >= 2, "the racers did not race"
