"""Named queues on the dashboard: each job's queue, the queue filter, and each queue's
workers in the figures (the JSON API and the page as the server renders it, and the
filter in a real browser), with the schedules' card."""

from __future__ import annotations

from typing import Any

from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.select import Select

from tests.dashboard.support import (
    Dashboard,
    click,
    no_alerts,
    start_dashboard,
    text_of,
    wait_until,
)
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


def test_the_queue_filter_and_the_schedules_in_a_browser(
    workspace: Workspace, browser: webdriver.Chrome
) -> None:
    """In a real browser: the Schedules card, and the queue filter leaving only that
    queue's jobs, each with its queue chip."""
    nightly = {"cron": "30 2 * * *", "class": "Echo", "method": "handle"}
    dashboard = start_dashboard(
        workspace, {**QUEUES, "schedules": {"nightly": {**nightly, "timezone": "Europe/Berlin"}}}
    )
    dashboard.log_in(browser)
    slow = dashboard.submit("Echo", "s", queue="slow")
    default = dashboard.submit("Echo", "d")
    for job_id in (slow, default):
        dashboard.wait_state(job_id, "succeeded")

    browser.get(dashboard.url + "/dashboard/jobs")
    schedules = text_of(browser, "#schedules")
    assert "nightly" in schedules and "30 2 * * *" in schedules and "Europe/Berlin" in schedules
    Select(browser.find_element(By.CSS_SELECTOR, 'select[name="queue"]')).select_by_value("slow")
    click(browser, '#filters button[type="submit"]')
    wait_until(browser, lambda d: "queue=slow" in d.current_url)

    def shown(driver: WebDriver) -> list[str | None]:
        rows = driver.find_elements(By.CSS_SELECTOR, "#board tr[data-job]")
        return [row.get_attribute("data-job") for row in rows]

    # The filtered page may still be loading when its URL is the new one: wait for its rows.
    wait_until(browser, lambda d: shown(d) == [str(slow)])
    assert shown(browser) == [str(slow)]
    assert "queue slow" in text_of(browser, f'#board tr[data-job="{slow}"]')
    no_alerts(browser)
