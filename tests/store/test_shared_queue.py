"""The store as the queue several processes share: claims in order and within limits,
fencing of stale attempt ends, the unique constraint, cancel requests and node leases.
Fast and in-process; tests/store/test_racing_claims.py races real connections."""

from __future__ import annotations

import time

import pytest

from bgjobd.store.base import StaleAttempt, Store, UniqueTaken
from bgjobs.model import JobInfo, JobState, Outcome, Priority
from tests.store.support import attempt, new_job, node, renewed

NO_LIMITS: dict[str, int] = {}


def claim(store: Store, owner: str = "n1", limits: dict[str, int] | None = None) -> JobInfo:
    job = store.claim_next(owner, 4242, time.time(), NO_LIMITS if limits is None else limits)
    assert job is not None, "nothing was claimed"
    return job


def claimed_ids(store: Store, limits: dict[str, int] | None = None) -> list[int]:
    """Every job claim_next gives, in the order it gives them."""
    ids: list[int] = []
    while (job := store.claim_next("n1", 1, time.time(), limits or NO_LIMITS)) is not None:
        ids.append(job.id)
    return ids


def state_of(store: Store, job_id: int) -> JobState:
    job = store.get(job_id)
    assert job is not None
    return job.state


# claim order ---------------------------------------------------------------------------------


def test_claims_take_priority_then_due_time_then_id(store: Store) -> None:
    past = time.time() - 100
    low_first = store.add([new_job(priority=Priority.LOW, run_at=past)])[0]
    medium_late = store.add([new_job(run_at=past + 20)])[0]
    medium_early = store.add([new_job(run_at=past + 10)])[0]
    medium_early_too = store.add([new_job(run_at=past + 10)])[0]  # same time: by id
    high_latest = store.add([new_job(priority=Priority.HIGH, run_at=past + 50)])[0]
    expected = [high_latest, medium_early, medium_early_too, medium_late, low_first]
    store.commit()

    assert [entry.job_id for entry in store.queued_in_order(10)] == expected
    assert [entry.job_id for entry in store.queued_in_order(2)] == expected[:2]
    assert claimed_ids(store) == expected
    assert store.queued_in_order(10) == []


def test_a_claim_starts_the_next_attempt_as_its_owners(store: Store) -> None:
    job_id = store.add([new_job()])[0]
    now = time.time()
    job = store.claim_next("node-b", 777, now, NO_LIMITS)
    assert job is not None and job.id == job_id
    assert job.state is JobState.RUNNING and job.attempts == 1
    assert job.owner == "node-b" and job.worker_pid == 777
    assert [(a.number, a.node, a.worker_pid) for a in job.history] == [(1, "node-b", 777)]
    assert store.attempt_is_current(job_id, "node-b", 1)
    assert not store.attempt_is_current(job_id, "node-c", 1)
    assert not store.attempt_is_current(job_id, "node-b", 2)
    assert store.claim_next("node-c", 1, now, NO_LIMITS) is None


def test_only_queued_jobs_are_claimed(store: Store) -> None:
    now = time.time()
    store.add([new_job(state=JobState.SCHEDULED, run_at=now - 1)])  # due, not yet promoted
    store.add([new_job(state=JobState.SCHEDULED, run_at=now + 60)])
    store.add([new_job(state=JobState.WAITING)])
    cancelled = store.add([new_job()])[0]
    store.cancel_waiting(cancelled, "by test", now)
    assert store.claim_next("n1", 1, now, NO_LIMITS) is None


def test_oneshot_jobs_are_never_claimed(store: Store) -> None:
    """`run_job.py` runs its own jobs: a daemon's claim never takes them."""
    store.add([new_job("Mine", oneshot=True)])
    daemons = store.add([new_job("Daemons")])[0]
    assert [entry.job_id for entry in store.queued_in_order(10)] == [daemons]
    assert claimed_ids(store) == [daemons]


# limits --------------------------------------------------------------------------------------


def test_a_class_at_its_limit_is_skipped_and_others_still_claimed(store: Store) -> None:
    limits = {"Limited": 1}
    first = store.add([new_job("Limited", priority=Priority.HIGH)])[0]
    second = store.add([new_job("Limited", priority=Priority.HIGH)])[0]
    other = store.add([new_job("Other", priority=Priority.LOW)])[0]
    store.commit()

    assert claim(store, limits=limits).id == first
    assert claim(store, limits=limits).id == other  # `second` comes first, but its class is full
    assert store.claim_next("n1", 1, time.time(), limits) is None
    store.finish_attempt(first, attempt(1, Outcome.SUCCEEDED), JobState.SUCCEEDED)
    assert claim(store, limits=limits).id == second


def test_a_limit_above_one_lets_that_many_run(store: Store) -> None:
    ids = store.add([new_job("Pair")])[0], store.add([new_job("Pair")])[0]
    third = store.add([new_job("Pair")])[0]
    assert claimed_ids(store, {"Pair": 2}) == list(ids)
    assert state_of(store, third) is JobState.QUEUED


def test_a_limit_counts_every_owners_running_jobs(store: Store, peer: Store) -> None:
    """What another node runs counts (here committed from another connection)."""
    limits = {"Limited": 1}
    mine = store.add([new_job("Limited")])[0]
    waiting = store.add([new_job("Limited")])[0]
    store.commit()
    assert claim(peer, "node-b", limits).id == mine
    peer.commit()
    assert store.claim_next("node-a", 1, time.time(), limits) is None
    assert state_of(store, waiting) is JobState.QUEUED


def test_a_limit_counts_oneshot_jobs_running(store: Store) -> None:
    """`run_job.py`'s jobs are never claimed, but while they run they hold their class's slots."""
    now = time.time()
    store.add(
        [new_job("Limited", state=JobState.RUNNING, oneshot=True, started_at=now, worker_pid=9)]
    )
    queued = store.add([new_job("Limited")])[0]
    assert store.claim_next("n1", 1, now, {"Limited": 1}) is None
    assert claim(store, limits={"Limited": 2}).id == queued


def test_a_class_without_a_limit_is_not_limited(store: Store) -> None:
    ids = [store.add([new_job("Free")])[0] for _ in range(3)]
    assert claimed_ids(store, {"Other": 1}) == ids


# due times -----------------------------------------------------------------------------------


def test_promote_due_queues_what_is_due_and_next_due_tells_the_rest(store: Store) -> None:
    now = time.time()
    soon = store.add([new_job(state=JobState.SCHEDULED, run_at=now + 10)])[0]
    later = store.add([new_job(state=JobState.SCHEDULED, run_at=now + 20)])[0]
    store.add([new_job(state=JobState.SCHEDULED, run_at=now + 5, oneshot=True)])
    store.commit()

    assert store.next_due() == pytest.approx(now + 10)  # run_job.py's own job is not counted
    # (What promote_due returns is left alone: a count here, the ids in the engine's rework.)
    assert not store.promote_due(now)
    assert store.queued_in_order(10) == []
    assert store.promote_due(now + 10)  # due at that very time
    assert [entry.job_id for entry in store.queued_in_order(10)] == [soon]
    assert store.next_due() == pytest.approx(now + 20)
    assert store.promote_due(now + 100)
    assert store.next_due() is None
    assert [entry.job_id for entry in store.queued_in_order(10)] == [soon, later]
    assert claimed_ids(store) == [soon, later]


# fencing -------------------------------------------------------------------------------------


def test_a_reclaimed_attempts_late_end_is_refused_and_changes_nothing(store: Store) -> None:
    """Node A is paused past its lease; B reclaims its attempt and runs the job again. A's
    late outcome is refused, whether the job waits or runs again."""
    job_id = store.add([new_job()])[0]
    claim(store, "node-a")
    # B's reclaim: A's attempt counts as interrupted and the job queues for a retry.
    store.finish_attempt(job_id, attempt(1, Outcome.INTERRUPTED), JobState.QUEUED)
    store.commit()
    with pytest.raises(StaleAttempt):
        store.finish_attempt(
            job_id, attempt(1, Outcome.SUCCEEDED, owner="node-a"), JobState.SUCCEEDED, result=1
        )
    store.commit()
    assert state_of(store, job_id) is JobState.QUEUED

    assert claim(store, "node-b").attempts == 2
    store.commit()
    before = store.get(job_id)
    with pytest.raises(StaleAttempt):
        store.finish_attempt(
            job_id, attempt(1, Outcome.SUCCEEDED, owner="node-a"), JobState.SUCCEEDED, result=1
        )
    store.commit()
    assert store.get(job_id) == before

    done = store.finish_attempt(
        job_id, attempt(2, Outcome.SUCCEEDED, owner="node-b"), JobState.SUCCEEDED, result=2
    )
    assert done.state is JobState.SUCCEEDED and done.result == 2
    store.commit()
    job = store.get(job_id)
    assert job is not None
    assert [(a.number, a.outcome, a.node) for a in job.history] == [
        (1, Outcome.INTERRUPTED, "node-a"),
        (2, Outcome.SUCCEEDED, "node-b"),
    ]


def test_the_same_node_cannot_end_an_older_attempt(store: Store) -> None:
    """A node that got the job back (after a restart under its old name) holds attempt 2,
    not attempt 1: the first attempt's late end is stale."""
    job_id = store.add([new_job()])[0]
    claim(store, "node-a")
    store.finish_attempt(job_id, attempt(1, Outcome.INTERRUPTED), JobState.QUEUED)
    claim(store, "node-a")
    with pytest.raises(StaleAttempt):
        store.finish_attempt(
            job_id, attempt(1, Outcome.FAILED, owner="node-a"), JobState.SCHEDULED, run_at=0.0
        )
    store.finish_attempt(job_id, attempt(2, Outcome.SUCCEEDED, owner="node-a"), JobState.SUCCEEDED)
    assert state_of(store, job_id) is JobState.SUCCEEDED
    job = store.get(job_id)
    assert job is not None
    # The stale end wrote no attempt of its own.
    assert [(a.number, a.outcome) for a in job.history] == [
        (1, Outcome.INTERRUPTED),
        (2, Outcome.SUCCEEDED),
    ]


def test_a_finished_attempt_cannot_end_twice(store: Store) -> None:
    job_id = store.add([new_job()])[0]
    claim(store, "node-a")
    store.finish_attempt(job_id, attempt(1, Outcome.SUCCEEDED, owner="node-a"), JobState.SUCCEEDED)
    with pytest.raises(StaleAttempt):
        store.finish_attempt(
            job_id, attempt(1, Outcome.FAILED, owner="node-a"), JobState.FAILED, reason="late"
        )
    job = store.get(job_id)
    assert job is not None and job.state is JobState.SUCCEEDED and job.reason is None


def test_a_user_retry_refuses_the_old_rounds_attempt(store: Store) -> None:
    job_id = store.add([new_job()])[0]
    claim(store, "node-a")
    # Node A lost its lease; B's reclaim ended the job (no attempts left, say); a user retries.
    store.finish_attempt(job_id, attempt(1, Outcome.INTERRUPTED), JobState.FAILED)
    assert store.requeue(job_id, time.time()) is not None
    with pytest.raises(StaleAttempt):
        store.finish_attempt(
            job_id, attempt(1, Outcome.SUCCEEDED, owner="node-a"), JobState.SUCCEEDED
        )
    claim(store, "node-b")
    with pytest.raises(StaleAttempt):
        store.finish_attempt(
            job_id, attempt(1, Outcome.SUCCEEDED, owner="node-a"), JobState.SUCCEEDED
        )
    assert state_of(store, job_id) is JobState.RUNNING


def test_a_user_retry_refuses_the_old_rounds_attempt_even_on_the_same_node(store: Store) -> None:
    job_id = store.add([new_job()])[0]
    claim(store, "node-a")
    store.finish_attempt(job_id, attempt(1, Outcome.INTERRUPTED), JobState.FAILED)
    store.requeue(job_id, time.time())
    claim(store, "node-a")  # round 2, attempt 1: the same (owner, number) as round 1's
    with pytest.raises(StaleAttempt):
        store.finish_attempt(
            job_id,
            attempt(1, Outcome.SUCCEEDED, owner="node-a", round_number=1),
            JobState.SUCCEEDED,
        )


def test_an_end_without_owner_is_not_fenced(store: Store) -> None:
    """Recovery records the end of a dead runner's attempt in its name: no check."""
    job_id = store.add([new_job()])[0]
    claim(store, "node-a")
    after = store.finish_attempt(job_id, attempt(1, Outcome.INTERRUPTED), JobState.QUEUED)
    assert after.state is JobState.QUEUED


# the unique constraint -----------------------------------------------------------------------


def test_an_equal_live_unique_job_is_refused_with_its_id(store: Store) -> None:
    first = store.add([new_job(unique_key="report:1")])[0]
    store.commit()
    for state in (JobState.QUEUED, JobState.SCHEDULED, JobState.WAITING):
        with pytest.raises(UniqueTaken) as taken:
            store.add([new_job(unique_key="report:1", state=state)])
        assert taken.value.job_id == first
    claim(store)  # running is live too
    with pytest.raises(UniqueTaken) as taken:
        store.add([new_job(unique_key="report:1")])
    assert taken.value.job_id == first
    assert store.counts()[JobState.QUEUED] == 0
    assert store.add([new_job(unique_key="report:2")])[0] > first  # another key is free


def test_a_refused_unique_job_leaves_the_rest_of_the_transaction(store: Store) -> None:
    """Submits share one commit: a refusal must not undo the others' jobs."""
    taken = store.add([new_job(unique_key="once")])[0]
    other = store.add([new_job()])[0]
    with pytest.raises(UniqueTaken):
        store.add([new_job(unique_key="once")])
    store.commit()
    assert store.get(taken) is not None and store.get(other) is not None


@pytest.mark.parametrize("end", [JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED])
def test_a_unique_key_is_free_again_once_its_job_is_final(store: Store, end: JobState) -> None:
    first = store.add([new_job(unique_key="nightly")])[0]
    if end is JobState.CANCELLED:
        store.cancel_waiting(first, "by test", time.time())
    else:
        claim(store)
        store.finish_attempt(first, attempt(1, Outcome.SUCCEEDED), end)
    store.commit()
    second = store.add([new_job(unique_key="nightly")])[0]
    assert second != first
    assert store.find_live_unique("nightly") == second


def test_a_chain_refused_for_a_later_links_unique_key_stores_nothing(store: Store) -> None:
    live = store.add([new_job("Report", unique_key="report")])[0]
    store.commit()
    chain = [
        new_job("Fetch", chain_position=0, chain_length=2),
        new_job("Report", state=JobState.WAITING, unique_key="report", chain_position=1),
    ]
    with pytest.raises(UniqueTaken) as taken:
        store.add(chain)
    assert taken.value.job_id == live
    store.commit()
    assert store.counts()[JobState.QUEUED] == 1


def test_a_retry_of_a_unique_job_while_an_equal_one_is_live_is_refused(store: Store) -> None:
    first = store.add([new_job(unique_key="nightly")])[0]
    claim(store)
    store.finish_attempt(first, attempt(1, Outcome.FAILED), JobState.FAILED)
    live = store.add([new_job(unique_key="nightly")])[0]
    store.commit()
    before = store.get(first)
    with pytest.raises(UniqueTaken) as taken:
        store.requeue(first, time.time())
    assert taken.value.job_id == live
    store.commit()
    assert store.get(first) == before


def test_a_unique_job_from_another_connection_is_refused(store: Store, peer: Store) -> None:
    first = store.add([new_job(unique_key="shared")])[0]
    store.commit()
    with pytest.raises(UniqueTaken) as taken:
        peer.add([new_job(unique_key="shared", oneshot=True)])
    assert taken.value.job_id == first


# cancel requests -----------------------------------------------------------------------------


def test_a_cancel_request_reaches_the_node_running_the_job(store: Store) -> None:
    job_id = store.add([new_job()])[0]
    other = store.add([new_job()])[0]
    claim(store, "node-a")
    claim(store, "node-b")
    assert store.request_cancel(job_id, "by user") == "node-a"
    assert store.cancel_requests("node-a") == [(job_id, "by user")]
    assert store.cancel_requests("node-b") == []
    store.finish_attempt(job_id, attempt(1, Outcome.CANCELLED), JobState.CANCELLED)
    assert store.cancel_requests("node-a") == []
    assert state_of(store, other) is JobState.RUNNING


def test_a_cancel_request_for_a_job_not_running_is_none(store: Store) -> None:
    job_id = store.add([new_job()])[0]
    assert store.request_cancel(job_id, "by user") is None
    assert store.request_cancel(job_id + 1000, "by user") is None
    claim(store, "node-a")
    assert store.cancel_requests("node-a") == []  # the earlier request was not kept


def test_a_cancel_request_ends_with_the_attempt(store: Store) -> None:
    """Asked of attempt 1, which its node gave back: attempt 2 is not asked to stop."""
    job_id = store.add([new_job()])[0]
    claim(store, "node-a")
    store.request_cancel(job_id, "by user")
    store.finish_attempt(job_id, attempt(1, Outcome.INTERRUPTED), JobState.QUEUED)
    claim(store, "node-a")
    assert store.cancel_requests("node-a") == []


# nodes ---------------------------------------------------------------------------------------


def test_states_of_gives_each_stored_job_s_state_and_attempt(store: Store) -> None:
    first, second = store.add([new_job()])[0], store.add([new_job()])[0]
    store.commit()
    assert store.claim(first, "me", 1, time.time()) is not None
    store.commit()
    # More ids than one SQLite statement binds, most of them no job's.
    asked = [first, *range(10**6, 10**6 + 1200), second]
    assert store.states_of(asked) == {first: (JobState.RUNNING, 1), second: (JobState.QUEUED, 0)}
    assert store.states_of([]) == {}


def test_the_store_s_clock_is_the_present(store: Store) -> None:
    """The clock leases are read on: this host's, or the server's (on this host too)."""
    before = time.time()
    now = store.clock()
    assert before - 1 < now < time.time() + 1


def test_nodes_are_listed_by_name_with_their_lease(store: Store) -> None:
    now = time.time()
    second, first = node("b", now=now, busy=3), node("a", now=now, pid=200)
    assert store.register_node(second) is None
    assert store.register_node(first) is None
    store.commit()
    assert store.nodes() == [first, second]


def test_a_live_name_is_refused_to_another_process(store: Store) -> None:
    now = time.time()
    holder = node("a", pid=100, now=now)
    store.register_node(holder)
    store.commit()
    assert store.register_node(node("a", pid=200, now=now + 1)) == holder
    assert store.nodes() == [holder]
    assert store.heartbeat(holder)


def test_a_dead_nodes_name_is_taken_over(store: Store) -> None:
    now = time.time()
    dead = node("a", pid=100, now=now - 60, lease=30)
    store.register_node(dead)
    successor = node("a", pid=200, now=now)
    assert store.register_node(successor) is None
    assert store.nodes() == [successor]
    assert not store.heartbeat(dead)  # the old process learns it lost its lease
    assert store.nodes() == [successor]


def test_the_same_process_registers_again(store: Store) -> None:
    now = time.time()
    store.register_node(node("a", pid=100, now=now))
    again = node("a", pid=100, now=now + 5)  # restarted: a new start time
    assert store.register_node(again) is None
    assert store.nodes() == [again]


def test_a_heartbeat_renews_the_lease(store: Store) -> None:
    now = time.time()
    first = node("a", now=now)
    store.register_node(first)
    beat = renewed(first, now + 10, busy=2)
    assert store.heartbeat(beat)
    assert store.nodes() == [beat]
    assert store.expire_nodes(now + 35) == []  # renewed until now + 40


def test_a_late_heartbeat_before_anyone_expired_the_node_keeps_it(store: Store) -> None:
    """Its lease ended, but no node has declared it dead (nor reclaimed its jobs) yet:
    the heartbeat renews it, and it is not expired after all."""
    now = time.time()
    paused = node("a", now=now - 40, lease=30)
    store.register_node(paused)
    assert store.heartbeat(renewed(paused, now))
    assert store.expire_nodes(now + 1) == []


def test_expired_nodes_are_returned_once(store: Store, peer: Store) -> None:
    now = time.time()
    dead = node("a", now=now, lease=-1.0)
    for registered in (dead, node("b", now=now), node("c", now=now, lease=-5.0)):
        store.register_node(registered)
    store.commit()
    assert store.expire_nodes(now) == ["a", "c"]
    store.commit()
    assert store.expire_nodes(now) == []
    store.commit()
    assert peer.expire_nodes(now) == []
    peer.commit()
    assert [n.name for n in store.nodes()] == ["b"]
    assert not store.heartbeat(renewed(dead, now + 1))  # it was declared dead


def test_orphan_owners_are_runners_of_running_jobs_that_are_no_live_node(store: Store) -> None:
    now = time.time()
    store.register_node(node("b", now=now))
    ids = [store.add([new_job()])[0] for _ in range(4)]
    oneshot = store.add([new_job(oneshot=True)])[0]
    for job_id, owner in zip(ids, ("ghost", "b", "ghost", "zombie"), strict=False):
        assert store.claim(job_id, owner, 1, now) is not None
    assert store.claim(oneshot, "run_job.py@host:1", 1, now) is not None
    store.commit()
    assert store.orphan_owners() == ["ghost", "zombie"]  # not b's, not the one-shot's
    store.commit()
    store.register_node(node("ghost", now=now))
    store.commit()
    assert store.orphan_owners() == ["zombie"]
    store.commit()


def test_leaving_removes_only_ones_own_row(store: Store) -> None:
    now = time.time()
    old = node("a", pid=100, now=now - 60)
    store.register_node(old)
    new = node("a", pid=200, now=now)
    store.register_node(new)
    store.leave(old)  # the replaced process's late, clean stop
    assert store.nodes() == [new]
    store.leave(new)
    assert store.nodes() == []


# change detection ----------------------------------------------------------------------------


def test_changed_tells_of_other_connections_commits(store: Store, peer: Store) -> None:
    store.changed()
    assert not store.changed()
    store.add([new_job()])
    store.commit()
    assert not store.changed()  # its own commit: it knows
    peer.add([new_job()])
    assert not store.changed()  # not committed yet
    peer.commit()
    assert store.changed()
    assert not store.changed()
