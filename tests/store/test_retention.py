"""What retention and schedules ask of the store (each backend): a schedule's latest key,
and a prune that takes only final jobs, a chain only whole, never a kept key."""

from __future__ import annotations

import time

from bgjobd.store.base import PruneRules, Store
from bgjobs.model import JobState, Outcome
from tests.store.support import attempt, new_job


def run_to_success(store: Store, job_id: int) -> None:
    assert store.claim(job_id, "me", 1, time.time()) is not None
    store.finish_attempt(job_id, attempt(1, Outcome.SUCCEEDED), JobState.SUCCEEDED)


def test_latest_key_is_the_greatest_of_its_prefix_only(store: Store) -> None:
    for key in (
        "schedule:a:2026-01-01T00:01:00Z",
        "schedule:a:2026-01-01T00:02:00Z",
        "schedule:ab:2026-01-01T00:03:00Z",  # another schedule whose name starts alike
        "schedule:b:2026-01-01T00:04:00Z",
    ):
        store.add([new_job(key=key)])
    store.commit()
    assert store.latest_key("schedule:a:") == "schedule:a:2026-01-01T00:02:00Z"
    assert store.latest_key("schedule:ab:") == "schedule:ab:2026-01-01T00:03:00Z"
    assert store.latest_key("schedule:c:") is None


def test_prune_keeps_live_jobs_live_chains_and_kept_keys(store: Store) -> None:
    kept_key = "schedule:s:2026-01-01T00:02:00Z"
    old_tick = store.add([new_job(key="schedule:s:2026-01-01T00:01:00Z")])[0]
    latest_tick = store.add([new_job(key=kept_key)])[0]
    done = store.add([new_job()])[0]
    queued = store.add([new_job()])[0]
    scheduled = store.add([new_job(state=JobState.SCHEDULED, run_at=time.time() + 600)])[0]
    chain = store.add(
        [
            new_job(chain_position=1, chain_length=2),
            new_job(state=JobState.WAITING, chain_position=2, chain_length=2),
        ]
    )
    for job_id in (old_tick, latest_tick, done, chain[0]):
        run_to_success(store, job_id)
    store.commit()
    rules = PruneRules(
        finished_before={JobState.SUCCEEDED: time.time() + 1}, keep_keys=frozenset({kept_key})
    )
    assert sorted(job.job_id for job in store.prune(rules, 100, dry_run=True)) == [old_tick, done]
    assert sorted(job.job_id for job in store.prune(rules, 100)) == [old_tick, done]
    store.commit()
    assert store.get(old_tick) is None and store.get(done) is None
    for job_id in (latest_tick, queued, scheduled, *chain):
        assert store.get(job_id) is not None
    # Once its last link is final, the chain goes whole.
    released = store.release_link(chain[1], [], time.time())
    assert released is not None
    run_to_success(store, chain[1])
    store.commit()
    later = PruneRules(
        finished_before={JobState.SUCCEEDED: time.time() + 1}, keep_keys=frozenset({kept_key})
    )
    assert sorted(job.job_id for job in store.prune(later, 100)) == chain
    store.commit()
    assert store.chain(chain[0]) == []
