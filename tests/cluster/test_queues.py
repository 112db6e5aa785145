"""Two nodes on one store, each running its own queues' workers: a job submitted through
either node runs on the node whose workers serve its queue."""

from __future__ import annotations

from bgjobs.model import JobSpec, JobState
from tests.cluster.conftest import MakeCluster


def test_each_node_runs_the_queues_it_has_workers_for(make_cluster: MakeCluster) -> None:
    cluster = make_cluster({"daemon": {"workers": 1}}, names=())
    # Both nodes know both queues (submits to either are accepted anywhere); each runs one.
    cluster.add("a", {"queues": {"reports": {"workers": 1}, "mail": {"workers": 0}}})
    cluster.add("b", {"queues": {"reports": {"workers": 0}, "mail": {"workers": 2}}})
    cluster.start()
    ids = {
        queue: [
            job_id
            for node in ("a", "b")
            for job_id in cluster[node]
            .client()
            .submit(
                [
                    JobSpec(class_name="Echo", method="handle", params=[n], queue=queue)
                    for n in range(5)
                ]
            )
            .ids
        ]
        for queue in ("reports", "mail")
    }
    for queue, runner in (("reports", "a"), ("mail", "b")):
        for job_id in ids[queue]:
            job = cluster.wait_for_job(job_id, lambda job: job.state.is_final, what="finished")
            assert job.state is JobState.SUCCEEDED
            assert (job.queue, job.node) == (queue, runner)
    stats = {queue.name: queue for queue in cluster["b"].client().stats().queues}
    assert (stats["mail"].workers, stats["reports"].workers) == (2, 0)
