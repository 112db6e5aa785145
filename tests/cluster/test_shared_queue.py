"""Two daemons and `run_job.py` on one store share its queue: every job runs once, a
unique job is one job whoever submits it, and a class's concurrency limit holds across
every process."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bgjobs.model import JobSpec, JobState
from tests.cluster.conftest import MakeCluster
from tests.support.cluster import Node
from tests.support.waiting import wait_for
from tests.support.workspace import REPO, Workspace

JOBS = 5000
BATCH = 250
RUNNERS = 3


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def _submit_tokens(node: Node, tokens: Path, numbers: range) -> list[int]:
    """Jobs writing `t<n>` for every n, in batches of BATCH jobs per request."""
    client = node.client()
    ids: list[int] = []
    for first in range(numbers.start, numbers.stop, BATCH):
        specs = [
            JobSpec(class_name="Token", method="handle", params=[str(tokens), f"t{n}"])
            for n in range(first, min(first + BATCH, numbers.stop))
        ]
        ids += client.submit(specs).ids
    return ids


def _listed_ids(node: Node) -> set[int]:
    client = node.client()
    ids: set[int] = set()
    while True:
        page = client.list_jobs(limit=1000, offset=len(ids))
        ids |= {job.id for job in page.jobs}
        if len(page.jobs) < 1000:
            return ids


def test_5000_jobs_through_two_daemons_and_run_job_each_run_exactly_once(
    make_cluster: MakeCluster, workspace: Workspace
) -> None:
    cluster = make_cluster({"allowed_jobs": {"Token": ["handle"]}}).start()
    tokens = workspace.root / "tokens"
    half = JOBS // 2
    runners = [
        subprocess.Popen(
            [sys.executable, str(REPO / "run_job.py"), "Token", "handle", f"{tokens},r{n}"],
            cwd=workspace.root,
            env=workspace.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for n in range(RUNNERS)
    ]
    with ThreadPoolExecutor(2) as pool:
        submits = [
            pool.submit(_submit_tokens, cluster["a"], tokens, range(0, half)),
            pool.submit(_submit_tokens, cluster["b"], tokens, range(half, JOBS)),
        ]
        submitted = [job_id for future in submits for job_id in future.result()]
    for runner in runners:
        output = runner.communicate(timeout=60)[0].decode()
        assert runner.returncode == 0, output
    assert len(set(submitted)) == JOBS

    wait_for(lambda: len(_lines(tokens)) >= JOBS + RUNNERS, timeout=120, what="every token")
    client = cluster["a"].client()
    wait_for(
        lambda: client.list_jobs(states=[JobState.SUCCEEDED], limit=1).total == JOBS + RUNNERS,
        timeout=30,
        what="every job recorded as succeeded",
    )

    written = _lines(tokens)
    expected = {f"t{n}" for n in range(JOBS)} | {f"r{n}" for n in range(RUNNERS)}
    assert len(written) == len(expected), "a job ran more than once"
    assert set(written) == expected
    jobs = cluster.jobs()
    assert len(jobs) == JOBS + RUNNERS
    assert all(job.state is JobState.SUCCEEDED and job.attempts == 1 for job in jobs)
    # Both daemons took their share (a node name for each), and the runners theirs.
    owners = {job.owner for job in jobs}
    assert {"a", "b"} <= owners, owners
    assert len(owners) == 2 + RUNNERS, owners
    # Either node serves the whole queue.
    every_id = {job.id for job in jobs}
    assert set(submitted) < every_id
    assert _listed_ids(cluster["a"]) == every_id
    assert _listed_ids(cluster["b"]) == every_id
    for node in cluster.nodes.values():
        listed = node.bgjobctl("list", "--json", "--limit", "1")
        assert listed.returncode == 0, listed.stderr
        assert json.loads(listed.stdout)["total"] == JOBS + RUNNERS
        # And either lists both nodes, alive.
        shown = node.bgjobctl("nodes", "--json")
        assert shown.returncode == 0, shown.stderr
        assert [entry["name"] for entry in json.loads(shown.stdout)["nodes"]] == ["a", "b"]


SUBMITTERS_PER_DAEMON = 8
UNIQUE_RUNNERS = 4


def test_racing_submitters_of_a_unique_job_on_two_daemons_and_run_job_get_one_job(
    make_cluster: MakeCluster, workspace: Workspace
) -> None:
    cluster = make_cluster(
        {"allowed_jobs": {"Token": ["handle"]}, "jobs": {"Token": {"unique": True}}}
    ).start()
    tokens = workspace.root / "tokens"
    gate = workspace.root / "gate"
    params = [str(tokens), "once", 0, str(gate)]
    clients = [
        node.client() for node in cluster.nodes.values() for _ in range(SUBMITTERS_PER_DAEMON)
    ]
    for client in clients:
        client.ping()  # connected before the race
    start = threading.Barrier(len(clients) + 1)

    def submit(client_index: int) -> tuple[int, bool]:
        start.wait()
        reply = clients[client_index].submit(
            [JobSpec(class_name="Token", method="handle", params=params)]
        )
        return reply.ids[0], reply.existing[0]

    runner_command = [
        sys.executable,
        str(REPO / "run_job.py"),
        "Token",
        "handle",
        "--json-params",
        json.dumps(params),
    ]
    with ThreadPoolExecutor(len(clients)) as pool:
        futures = [pool.submit(submit, n) for n in range(len(clients))]
        runners = [
            subprocess.Popen(
                runner_command,
                cwd=workspace.root,
                env=workspace.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            for _ in range(UNIQUE_RUNNERS)
        ]
        start.wait()
        replies = [future.result() for future in futures]

    # Every daemon reply names one job, made by exactly one of them (or by a runner).
    ids = {job_id for job_id, _ in replies}
    assert len(ids) == 1, replies
    created = [existing for _, existing in replies if not existing]
    assert len(created) <= 1, replies
    (job_id,) = ids

    def runners_settled() -> bool:
        """Each runner has declined and exited, but for one that made the job itself and
        runs it: so none can come late, after the job ended, and make another."""
        alive = [runner for runner in runners if runner.poll() is None]
        if len(alive) > 1:
            return False
        return not alive or cluster.job(job_id).owner.endswith(f":{alive[0].pid}")

    wait_for(runners_settled, timeout=60, what="every run_job.py to decline or run the job")
    gate.touch()
    outputs = [runner.communicate(timeout=60)[0].decode() for runner in runners]
    assert [runner.returncode for runner in runners] == [0] * UNIQUE_RUNNERS, outputs
    declined = [out for out in outputs if f"not run: the equal unique job {job_id}" in out]
    # A runner that got there first ran the job itself: then no daemon created one.
    assert len(declined) == UNIQUE_RUNNERS - (0 if created else 1), outputs

    wait_for(lambda: _lines(tokens) == ["once"], timeout=30, what="the job's one run")
    wait_for(
        lambda: cluster.job(job_id).state is JobState.SUCCEEDED, timeout=30, what="its success"
    )
    assert [job.id for job in cluster.jobs("Token")] == [job_id]


LIMITED_PER_DAEMON = 15
LIMITED_RUNNERS = 3


def test_max_concurrency_1_holds_across_two_daemons_and_run_job(
    make_cluster: MakeCluster, workspace: Workspace
) -> None:
    cluster = make_cluster(
        {"allowed_jobs": {"Interval": ["handle"]}, "jobs": {"Interval": {"max_concurrency": 1}}}
    ).start()
    intervals = workspace.root / "intervals"
    params = [str(intervals), 0.05]

    def submit_one_by_one(node: Node) -> list[int]:
        client = node.client()
        spec = JobSpec(class_name="Interval", method="handle", params=params)
        return [client.submit([spec]).ids[0] for _ in range(LIMITED_PER_DAEMON)]

    runners = [
        subprocess.Popen(
            [
                *(sys.executable, str(REPO / "run_job.py"), "Interval", "handle"),
                *("--json-params", json.dumps(params)),
            ],
            cwd=workspace.root,
            env=workspace.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for _ in range(LIMITED_RUNNERS)
    ]
    with ThreadPoolExecutor(2) as pool:
        submits = [pool.submit(submit_one_by_one, node) for node in cluster.nodes.values()]
        submitted = [job_id for future in submits for job_id in future.result()]
    for runner in runners:
        output = runner.communicate(timeout=120)[0].decode()
        assert runner.returncode == 0, output
    total = 2 * LIMITED_PER_DAEMON + LIMITED_RUNNERS
    wait_for(lambda: len(_lines(intervals)) == total, timeout=60, what="every interval")

    spans = sorted(tuple(float(t) for t in line.split()) for line in _lines(intervals))
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start >= end, f"two jobs ran at once: {spans}"
    client = cluster["b"].client()
    wait_for(
        lambda: client.list_jobs(states=[JobState.SUCCEEDED], limit=1).total == total,
        timeout=30,
        what="every job recorded as succeeded",
    )
    assert len(set(submitted)) == 2 * LIMITED_PER_DAEMON
    jobs = cluster.jobs("Interval")
    assert len(jobs) == total
    assert all(job.state is JobState.SUCCEEDED and job.attempts == 1 for job in jobs)
