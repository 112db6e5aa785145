"""The JSON API, the event stream and /metrics, over real sockets."""

from __future__ import annotations

import http.client
import time
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.dashboard.support import Dashboard, start_dashboard
from tests.support.workspace import Workspace


def api(dashboard: Dashboard, path: str) -> Any:
    answer = dashboard.http().get(path)
    assert answer.status == 200, answer.text
    assert answer.headers["Content-Type"].startswith("application/json")
    return answer.json()


def test_jobs_api_filters_and_pages(dashboard: Dashboard) -> None:
    ids = [dashboard.submit("Echo", f"item-{n}") for n in range(12)]
    failed = dashboard.submit("Fail", "nope")
    scheduled = dashboard.submit("Sleep", 1, delay=300)
    for job_id in ids:
        dashboard.wait_state(job_id, "succeeded")
    dashboard.wait_state(failed, "failed")

    everything = api(dashboard, "/api/jobs")
    assert everything["total"] == 14
    assert [job["id"] for job in everything["jobs"]] == sorted([*ids, failed, scheduled])[::-1]
    page = api(dashboard, "/api/jobs?state=succeeded&per_page=10&page=2")
    assert (page["total"], page["page"], page["pages"]) == (12, 2, 2)
    assert [job["id"] for job in page["jobs"]] == sorted(ids)[::-1][10:]
    assert [job["id"] for job in api(dashboard, "/api/jobs?class=Fail")["jobs"]] == [failed]
    assert [job["id"] for job in api(dashboard, "/api/jobs?q=item-7")["jobs"]] == [ids[7]]
    assert [job["id"] for job in api(dashboard, "/api/jobs?state=finished")["jobs"]] == sorted(
        [*ids, failed]
    )[::-1][:25]
    [job] = api(dashboard, "/api/jobs?state=scheduled")["jobs"]
    assert job["id"] == scheduled
    assert job["can_cancel"] is True
    assert job["can_retry"] is False
    assert job["when"]["tick"] == "until"
    for bad in ("state=bogus", "page=0", "per_page=7", "page=x"):
        answer = dashboard.http().get(f"/api/jobs?{bad}")
        assert answer.status == 400, bad
        assert "error" in answer.json()


def test_job_and_stats_api(dashboard: Dashboard) -> None:
    job_id = dashboard.submit("Printer", "hi")
    dashboard.wait_state(job_id, "succeeded")
    detail = api(dashboard, f"/api/jobs/{job_id}")
    record = detail["record"]
    assert record["class_name"] == "Printer"
    assert record["params"] == ["hi"]
    assert record["result"] == "hi"
    assert record["history"][0]["outcome"] == "succeeded"
    assert "out: hi" in detail["output"]["text"]
    assert detail["attempts"][0]["outcome"] == "succeeded"
    assert dashboard.http().get("/api/jobs/99999").status == 404

    stats = api(dashboard, "/api/stats")
    assert stats["counts"]["succeeded"] == 1
    assert stats["total"] == 1
    assert stats["worker_count"] == 2
    assert len(stats["workers"]) == 2
    assert stats["daemon_pid"] == dashboard.daemon.pid
    assert len(stats["throughput"]) == 60
    assert stats["throughput"][-1]["succeeded"] == 1
    assert stats["chart"]["peak"] == 1

    overview = api(dashboard, "/api/overview")
    assert [job["id"] for job in overview["recent"]["jobs"]] == [job_id]
    logs = api(dashboard, "/api/logs")
    assert any(f"job {job_id} attempt 1/1 succeeded" in line["message"] for line in logs["main"])
    assert logs["main"][0]["status"] in ("SUCCESS", "INFO")


def test_metrics_in_prometheus_format(dashboard: Dashboard, tmp_path: Path) -> None:
    for n in range(3):
        dashboard.wait_state(dashboard.submit("Echo", n), "succeeded")
    dashboard.wait_state(dashboard.submit("Fail"), "failed")
    for n in range(2):
        dashboard.submit("Sleep", 60, str(tmp_path / f"s{n}"))
    queued = dashboard.submit("Echo", "waits")
    dashboard.wait_state(queued, "queued")

    answer = dashboard.http().get("/metrics")
    assert answer.status == 200
    assert answer.headers["Content-Type"].startswith("text/plain")
    families = {family.name: family for family in text_string_to_metric_families(answer.text)}

    def value(family: str, sample: str, **labels: str) -> float:
        return next(
            s.value
            for s in families[family].samples
            if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items())
        )

    assert families["bgjobs_jobs"].type == "gauge"
    assert value("bgjobs_jobs", "bgjobs_jobs", state="succeeded") == 3
    assert value("bgjobs_jobs", "bgjobs_jobs", state="failed") == 1
    assert value("bgjobs_jobs", "bgjobs_jobs", state="running") == 2
    assert value("bgjobs_jobs", "bgjobs_jobs", state="queued") == 1
    assert value("bgjobs_queue_depth", "bgjobs_queue_depth") == 1
    assert value("bgjobs_workers", "bgjobs_workers") == 2
    assert value("bgjobs_workers_busy", "bgjobs_workers_busy") == 2
    assert families["bgjobs_attempts"].type == "counter"
    attempts = "bgjobs_attempts_total"
    assert value("bgjobs_attempts", attempts, job_class="Echo", outcome="succeeded") == 3
    assert value("bgjobs_attempts", attempts, job_class="Fail", outcome="failed") == 1
    assert value("bgjobs_attempts", attempts, job_class="Sleep", outcome="succeeded") == 0
    failures = "bgjobs_attempt_failures_total"
    assert value("bgjobs_attempt_failures", failures, job_class="Fail") == 1
    assert value("bgjobs_attempt_failures", failures, job_class="Echo") == 0
    durations = families["bgjobs_attempt_duration_seconds"]
    assert durations.type == "histogram"
    seconds = "bgjobs_attempt_duration_seconds"
    assert value(seconds, seconds + "_count", job_class="Echo") == 3
    assert value(seconds, seconds + "_bucket", job_class="Echo", le="+Inf") == 3
    assert value(seconds, seconds + "_sum", job_class="Echo") > 0
    # The dashboard's own registry: nothing of the process-wide default one.
    assert not any(name.startswith(("python_", "process_")) for name in families)


def read_event(stream: http.client.HTTPResponse, name: str) -> str:
    """The data of the next event called `name` (comments and other events skipped)."""
    event = ""
    while True:
        line = stream.readline().decode()
        assert line, "the stream ended"
        if line.startswith("event: "):
            event = line.removeprefix("event: ").strip()
        elif line.startswith("data: ") and event == name:
            return line.removeprefix("data: ").strip()


def test_event_stream_and_a_clean_stop_while_it_is_open(dashboard: Dashboard) -> None:
    host, port = dashboard.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=20)
    try:
        connection.request(
            "GET",
            "/api/events",
            headers={
                "Accept": "text/event-stream",
                "Authorization": f"Bearer {dashboard.token}",
            },
        )
        stream = connection.getresponse()
        assert stream.status == 200
        assert stream.headers["Content-Type"] == "text/event-stream"
        read_event(stream, "hello")
        job_id = dashboard.submit("Echo", "ping")
        seen = ""
        while '"state":"succeeded"' not in seen:  # each read is bounded by the socket timeout
            seen = read_event(stream, "jobs")
        assert f'"id":{job_id}' in seen

        started = time.monotonic()
        assert dashboard.daemon.stop(timeout=20) == 0, dashboard.daemon.stderr
        assert time.monotonic() - started < 10
        stream.read()  # the stream ends cleanly with the daemon
    finally:
        connection.close()


def test_jobs_held_by_a_concurrency_limit_are_marked_in_the_queue(
    workspace: Workspace, tmp_path: Path
) -> None:
    dashboard = start_dashboard(workspace, {"jobs": {"Record": {"overlap": False}}})
    record = str(tmp_path / "record")
    first = dashboard.submit("Record", record, "first", 60)
    dashboard.wait_state(first, "running")
    second = dashboard.submit("Record", record, "second")
    dashboard.wait_state(second, "queued")

    [held] = api(dashboard, "/api/overview")["queued"]["jobs"]
    assert (held["id"], held["position"], held["held"]) == (second, 1, True)
    [listed] = api(dashboard, "/api/jobs?state=queued")["jobs"]
    assert (listed["id"], listed["held"]) == (second, True)
