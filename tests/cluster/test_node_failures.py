"""What one node does about another: a cancel sent to one kills the attempt the other runs;
a node stopped or killed past its lease loses its running job to a survivor, which runs it
to its end, and the stopped node's late outcome is refused (fencing)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bgjobs.model import JobInfo, JobSpec, JobState, Outcome
from tests.cluster.conftest import MakeCluster
from tests.support.cluster import Cluster, Node
from tests.support.procs import group_members, is_gone
from tests.support.waiting import wait_for
from tests.support.workspace import Workspace

LEASE_SECONDS = 2
RECLAIM_TIMEOUT = 30.0
"""How long a survivor may take to see a lease run out and start the job again: the lease,
a heartbeat's third of it, a retry and a claim; generous for a loaded machine."""


def _running_on(cluster: Cluster, job_id: int) -> tuple[Node, Node]:
    """The node running the job (it may be either: both claim), and the other one; once
    its worker has taken the attempt up (made the lock file), not merely been chosen."""
    job = cluster.wait_for_job(job_id, lambda job: job.state is JobState.RUNNING, what="to run")
    runner = cluster[job.owner]
    wait_for(runner.lock_files, timeout=30, what=f"node {runner.name}'s worker to take it up")
    (other,) = (node for node in cluster.nodes.values() if node is not runner)
    return runner, other


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_a_cancel_sent_to_one_node_kills_the_job_running_on_the_other(
    make_cluster: MakeCluster, workspace: Workspace
) -> None:
    cluster = make_cluster({"allowed_jobs": {"Group": ["handle"]}}).start()
    pids = workspace.root / "group"
    spec = JobSpec(class_name="Group", method="handle", params=[str(pids)])
    job_id = cluster["a"].client().submit([spec]).ids[0]
    runner, other = _running_on(cluster, job_id)
    wait_for(pids.exists, timeout=30, what="the job's pids")
    pid, pgid, child = map(int, pids.read_text().split())
    assert group_members(pgid), "the job's process group is not there to be killed"

    requested = time.monotonic()
    cancelled = other.client().cancel(job_id)
    replied = time.monotonic()
    assert cancelled.state is JobState.CANCELLED, cancelled
    # The node running it polls for cancels every 50 ms and kills the group at once.
    wait_for(lambda: not group_members(pgid), timeout=1.0, what="the job's process group to go")
    gone = time.monotonic()
    assert is_gone(pid) and is_gone(child)
    wait_for(lambda: not runner.lock_files(), timeout=1.0, what="the lock file to go")
    job = cluster.job(job_id)
    assert job.state is JobState.CANCELLED
    assert [attempt.node for attempt in job.history] == [runner.name]
    print(f"cancel replied in {replied - requested:.3f}s, group gone {gone - requested:.3f}s")


def _reclaimable_token_job(cluster: Cluster, tokens: Path, gate: Path) -> int:
    """A job that waits for `gate`, then writes a token; submitted to node a."""
    spec = JobSpec(class_name="Token", method="handle", params=[str(tokens), "done", 0, str(gate)])
    return cluster["a"].client().submit([spec]).ids[0]


RECLAIM_SETTINGS: dict[str, Any] = {
    "allowed_jobs": {"Token": ["handle"]},
    # Reclaiming counts the lost attempt as interrupted: the retry rules give it another.
    "jobs": {"Token": {"retry_attempts": 2, "retry_delay_seconds": 0}},
    "daemon": {"lease_seconds": LEASE_SECONDS},
}


def _rerun_by(cluster: Cluster, job_id: int, survivor: Node) -> JobInfo:
    return cluster.wait_for_job(
        job_id,
        lambda job: job.state is JobState.RUNNING and job.owner == survivor.name,
        timeout=RECLAIM_TIMEOUT,
        what=f"node {survivor.name} to run it again",
    )


def test_a_node_stopped_past_its_lease_loses_its_job_and_its_late_outcome_is_refused(
    make_cluster: MakeCluster, workspace: Workspace
) -> None:
    cluster = make_cluster(RECLAIM_SETTINGS).start()
    tokens, gate = workspace.root / "tokens", workspace.root / "gate"
    job_id = _reclaimable_token_job(cluster, tokens, gate)
    stopped, survivor = _running_on(cluster, job_id)

    # Only the daemon stops: its worker runs on, and ends its attempt while it sleeps.
    with stopped.paused():
        _rerun_by(cluster, job_id, survivor)
        gate.touch()
        cluster.wait_for_job(
            job_id, lambda job: job.state is JobState.SUCCEEDED, what="the survivor's success"
        )
        wait_for(lambda: len(_lines(tokens)) == 2, timeout=30, what="both attempts' tokens")

    refusal = f"job {job_id}: attempt 1 ended (succeeded) after its node {stopped.name} lost"
    wait_for(lambda: refusal in stopped.error_log(), timeout=30, what="the late outcome's refusal")
    (line,) = [line for line in stopped.error_log().splitlines() if refusal in line]
    assert "WARNING" in line and "not recorded" in line, line

    job = cluster.job(job_id)
    assert job.state is JobState.SUCCEEDED
    assert [(a.node, a.outcome) for a in job.history] == [
        (stopped.name, Outcome.INTERRUPTED),
        (survivor.name, Outcome.SUCCEEDED),
    ]
    assert f"job {job_id}: reclaimed from node {stopped.name}" in survivor.error_log()
    # The stopped node found its lease gone, registered again and serves on.
    wait_for(stopped.process.answers, timeout=30, what="the stopped node to answer again")
    assert cluster.job(job_id).history == job.history


def test_a_killed_node_s_running_job_finishes_on_the_survivor_after_the_lease(
    make_cluster: MakeCluster, workspace: Workspace
) -> None:
    cluster = make_cluster(RECLAIM_SETTINGS).start()
    tokens, gate = workspace.root / "tokens", workspace.root / "gate"
    job_id = _reclaimable_token_job(cluster, tokens, gate)
    killed, survivor = _running_on(cluster, job_id)

    killed.process.kill()
    _rerun_by(cluster, job_id, survivor)
    gate.touch()
    job = cluster.wait_for_job(
        job_id, lambda job: job.state is JobState.SUCCEEDED, what="the survivor's success"
    )
    assert [(a.node, a.outcome) for a in job.history] == [
        (killed.name, Outcome.INTERRUPTED),
        (survivor.name, Outcome.SUCCEEDED),
    ]
    assert job.history[0].error is not None
    assert killed.name in job.history[0].error.message
    assert f"job {job_id}: reclaimed from node {killed.name}" in survivor.error_log()
    assert "done" in _lines(tokens)


def test_a_second_daemon_with_a_live_node_s_name_refuses_to_start(
    make_cluster: MakeCluster,
) -> None:
    cluster = make_cluster(names=("a",))
    cluster["a"].start()
    twin = cluster.add("twin", {"daemon": {"node": "a"}})
    refused = twin.start(ready=False)
    assert refused.process.wait(30) == 2, refused.stderr
    assert "node name 'a' is in use" in refused.stderr, refused.stderr
    assert cluster["a"].process.answers()


def test_jobs_a_node_claimed_after_it_was_declared_dead_are_not_cancelled(
    make_cluster: MakeCluster, workspace: Workspace
) -> None:
    """A node woken past its lease may claim jobs before its heartbeat finds the lease gone
    (nobody reclaims those: they were claimed after the reclaim). Stopping its attempts
    then must give those jobs back, not end them as cancelled."""
    cluster = make_cluster(RECLAIM_SETTINGS).start()
    tokens, gate = workspace.root / "tokens", workspace.root / "gate"
    sleeper, other = cluster["b"], cluster["a"]
    with sleeper.paused():
        spec = JobSpec(class_name="Token", method="handle", params=[str(tokens), "t", 0, str(gate)])
        # Two for the other node's workers, two left queued for whoever claims next.
        ids = other.client().submit([spec] * 4).ids
        wait_for(
            lambda: f"node {sleeper.name} is dead" in other.error_log(),
            timeout=RECLAIM_TIMEOUT,
            what=f"node {other.name} to declare node {sleeper.name} dead",
        )
    gate.touch()
    jobs = [
        cluster.wait_for_job(job_id, lambda job: job.state.is_final, what="to end")
        for job_id in ids
    ]
    assert [job.state for job in jobs] == [JobState.SUCCEEDED] * 4, [
        (job.id, job.state, job.reason, cluster.job(job.id).history) for job in jobs
    ]


def test_a_running_job_of_a_runner_that_is_no_live_node_is_reclaimed(
    make_cluster: MakeCluster, workspace: Workspace
) -> None:
    """A job left running under a name that is no node (its node expired by a transaction
    whose reclaiming was lost with the store): a node's heartbeat reclaims it, and it runs
    again there to its end."""
    cluster = make_cluster(RECLAIM_SETTINGS, names=("a",)).start()
    tokens = workspace.root / "tokens"
    spec = JobSpec(class_name="Token", method="handle", params=[str(tokens), "done"], delay=3600)
    job_id = cluster["a"].client().submit([spec]).ids[0]
    with cluster.store() as store:
        assert store.promote([job_id]) == [job_id]
        assert store.claim(job_id, "ghost", 4242, time.time()) is not None
        store.commit()
    job = cluster.wait_for_job(
        job_id, lambda job: job.state is JobState.SUCCEEDED, what="its reclaim and run"
    )
    assert [(a.node, a.outcome) for a in job.history] == [
        ("ghost", Outcome.INTERRUPTED),
        ("a", Outcome.SUCCEEDED),
    ]
    assert "ghost is no live node but ran 1 job(s): reclaimed" in cluster["a"].error_log()
    assert _lines(tokens) == ["done"]
