"""Rate limits and queues on the dashboard: each rate-limited class's window (its starts,
the windows at their rate, the jobs they hold, when the next start frees) on the page and
kept live in a real browser; per-queue and per-rate gauges on /metrics."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from selenium import webdriver
from selenium.webdriver.remote.webdriver import WebDriver

from tests.dashboard.support import Dashboard, no_alerts, start_dashboard, text_of, wait_until
from tests.support.workspace import Workspace

RATED: dict[str, Any] = {
    "daemon": {"workers": 2},
    "queues": {"slow": {"workers": 1}},
    "jobs": {
        "Echo": {"rate_limit": "1/h"},
        "Add": {"rate_limit": "1/h", "limit_by": 0, "queue": "slow"},
    },
}


@pytest.fixture
def dashboard(workspace: Workspace) -> Dashboard:
    return start_dashboard(workspace, RATED)


def gauges(dashboard: Dashboard) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    answer = dashboard.http().get("/metrics")
    assert answer.status == 200
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }


def cell(browser: WebDriver, class_name: str, field: str) -> str:
    return text_of(browser, f'[data-rate="{class_name}"] [data-field="{field}"]')


def test_rate_limits_on_the_page_live_and_in_metrics(
    dashboard: Dashboard, browser: webdriver.Chrome
) -> None:
    dashboard.wait_state(dashboard.submit("Echo", "first"), "succeeded")
    held = [dashboard.submit("Echo", n) for n in ("b", "c")]
    # Customer 1's first job runs, its second waits; customer 2's runs beside it.
    adds = [dashboard.submit("Add", 1, 2), dashboard.submit("Add", 2, 2)]
    for job_id in adds:
        dashboard.wait_state(job_id, "succeeded")
    waiting_add = dashboard.submit("Add", 1, 3)
    sleeper = dashboard.submit("Sleep", 60)
    dashboard.wait_state(sleeper, "running")

    browser.get(dashboard.url + "/dashboard/jobs")
    assert "Rate limits" in text_of(browser, "#rates")
    assert text_of(browser, '[data-rate="Echo"]').split()[:2] == ["Echo", "1/h"]
    assert "1/h per params[0]" in text_of(browser, '[data-rate="Add"]')
    assert cell(browser, "Echo", "started_text") == "1"
    assert cell(browser, "Echo", "full") == "1"
    assert cell(browser, "Echo", "held") == "2"
    assert cell(browser, "Echo", "next_text").startswith("in 59m")
    assert cell(browser, "Add", "started_text") == "2 (2 values)"
    assert (cell(browser, "Add", "full"), cell(browser, "Add", "held")) == ("2", "1")

    # Kept live: one more held job shows without a reload.
    held.append(dashboard.submit("Echo", "d"))
    wait_until(browser, lambda d: cell(d, "Echo", "held") == "3")
    no_alerts(browser)

    values = gauges(dashboard)
    assert values[("bgjobs_rate_limit_started", (("job_class", "Echo"),))] == 1
    assert values[("bgjobs_rate_limit_held", (("job_class", "Echo"),))] == 3
    assert values[("bgjobs_rate_limit_held", (("job_class", "Add"),))] == 1
    queue_jobs = {
        (labels[0][1], labels[1][1]): value
        for (name, labels), value in values.items()
        if name == "bgjobs_queue_jobs"
    }
    assert queue_jobs == {
        ("default", "queued"): 3,
        ("default", "running"): 1,
        ("slow", "queued"): 1,
        ("slow", "running"): 0,
    }
    assert values[("bgjobs_queue_workers", (("queue", "default"),))] == 2
    assert values[("bgjobs_queue_workers", (("queue", "slow"),))] == 1
    assert values[("bgjobs_queue_workers_busy", (("queue", "default"),))] == 1
    assert values[("bgjobs_queue_workers_busy", (("queue", "slow"),))] == 0
    assert dashboard.job(waiting_add).state.value == "queued"
    dashboard.workspace.client().cancel(sleeper)
