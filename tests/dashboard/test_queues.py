"""Named queues on the dashboard: each job's queue, the queue filter, and each queue's
workers in the figures (the JSON API and the page as the server renders it)."""

from __future__ import annotations

from typing import Any

from tests.dashboard.support import Dashboard, start_dashboard
from tests.support.workspace import Workspace

QUEUES = {"queues": {"slow": {"workers": 1}}, "daemon": {"workers": 1}}


def api(dashboard: Dashboard, path: str) -> Any:
    answer = dashboard.http().get(path)
    assert answer.status == 200, answer.text
    return answer.json()


def test_jobs_show_their_queue_and_filter_by_it(workspace: Workspace) -> None:
    dashboard = start_dashboard(workspace, QUEUES)
    slow = dashboard.submit("Echo", "s", queue="slow")
    default = dashboard.submit("Echo", "d")
    for job_id in (slow, default):
        dashboard.wait_state(job_id, "succeeded")

    listed = api(dashboard, "/api/jobs?queue=slow")
    assert [(job["id"], job["queue"]) for job in listed["jobs"]] == [(slow, "slow")]
    assert listed["filters"]["queue"] == "slow"
    assert [job["id"] for job in api(dashboard, "/api/jobs?queue=default")["jobs"]] == [default]
    detail = api(dashboard, f"/api/jobs/{slow}")
    assert detail["record"]["queue"] == "slow"

    page = dashboard.http().get("/dashboard/jobs?queue=slow").text
    assert '<select name="queue">' in page
    assert '<option value="slow" selected>slow</option>' in page
    assert "queue slow" in page  # the job's chip


def test_stats_give_each_queues_workers(workspace: Workspace) -> None:
    dashboard = start_dashboard(workspace, QUEUES)
    stats = api(dashboard, "/api/stats")
    assert [(q["name"], q["workers"], q["busy"]) for q in stats["queues"]] == [
        ("default", 1, 0),
        ("slow", 1, 0),
    ]
    assert stats["queues_text"] == "default 0/1 · slow 0/1"
    assert "default 0/1 · slow 0/1" in dashboard.http().get("/dashboard/jobs").text
