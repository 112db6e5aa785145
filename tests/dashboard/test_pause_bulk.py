"""Pause and resume, and the bulk actions, on the dashboard: buttons in a real browser,
CSRF enforced, the pauses shown and counted in /metrics."""

from __future__ import annotations

from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from selenium import webdriver
from selenium.webdriver.common.by import By

from tests.dashboard.support import Dashboard, click, no_alerts, text_of, wait_until
from tests.support.waiting import wait_for


def paused_gauges(dashboard: Dashboard) -> dict[tuple[str, str], float]:
    answer = dashboard.http().get("/metrics")
    assert answer.status == 200
    return {
        (sample.labels["kind"], sample.labels["name"]): sample.value
        for family in text_string_to_metric_families(answer.text)
        if family.name == "bgjobs_paused"
        for sample in family.samples
    }


def test_pause_and_resume_buttons(dashboard: Dashboard, browser: webdriver.Chrome) -> None:
    held = dashboard.submit("Echo", "held")
    dashboard.wait_state(held, "succeeded")  # the daemon runs jobs
    browser.get(dashboard.url + "/dashboard/jobs?class=Echo")
    click(browser, 'button[data-verb="pause"][data-pause="class:Echo"]')
    wait_until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, '[data-paused="class:Echo"]'))
    assert "Paused" in text_of(browser, "#pauses")
    assert paused_gauges(dashboard) == {("class", "Echo"): 1.0}

    waiting = dashboard.submit("Echo", "waits")
    ran = dashboard.submit("Add", 1, 2)
    dashboard.wait_state(ran, "succeeded")
    assert dashboard.job(waiting).state.value == "queued"

    click(browser, '#pauses button[data-verb="resume"][data-pause="class:Echo"]')
    wait_until(browser, lambda d: not d.find_elements(By.CSS_SELECTOR, "[data-paused]"))
    dashboard.wait_state(waiting, "succeeded")
    assert paused_gauges(dashboard) == {}

    click(browser, 'button[data-verb="pause"][data-pause="all:"]')
    wait_until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, '[data-paused="all:"]'))
    assert paused_gauges(dashboard) == {("all", ""): 1.0}
    click(browser, '#pauses button[data-verb="resume"][data-pause="all:"]')
    wait_until(browser, lambda d: not d.find_elements(By.CSS_SELECTOR, "[data-paused]"))
    no_alerts(browser)


def test_cancel_all_matching_asks_then_cancels_exactly_those(
    dashboard: Dashboard, browser: webdriver.Chrome
) -> None:
    sleepers = [dashboard.submit("Sleep", 60, delay=300) for _ in range(3)]
    kept = dashboard.submit("Echo", "kept", delay=300)
    browser.get(dashboard.url + "/dashboard/jobs?class=Sleep")
    click(browser, "#bulk-cancel")
    wait_until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#bulk-confirm"))
    assert text_of(browser, "#bulk-count") == "3"
    assert [dashboard.job(job_id).state.value for job_id in sleepers] == ["scheduled"] * 3

    click(browser, "#bulk-yes")
    wait_until(browser, lambda d: "3 matching job(s) cancelled." in text_of(d, ".notice"))
    assert [dashboard.job(job_id).state.value for job_id in sleepers] == ["cancelled"] * 3
    assert dashboard.job(kept).state.value == "scheduled"
    no_alerts(browser)


def test_retry_all_matching(dashboard: Dashboard, browser: webdriver.Chrome) -> None:
    failed = [dashboard.submit("Fail") for _ in range(2)]
    for job_id in failed:
        dashboard.wait_state(job_id, "failed")
    browser.get(dashboard.url + "/dashboard/jobs?state=failed&class=Fail")
    click(browser, "#bulk-retry")
    wait_until(browser, lambda d: text_of(d, "#bulk-count") == "2")
    click(browser, "#bulk-yes")
    wait_until(browser, lambda d: "2 matching job(s) queued again." in text_of(d, ".notice"))
    for job_id in failed:
        wait_for(lambda: len(dashboard.job(job_id).history) == 2, what="a second round")  # noqa: B023
    no_alerts(browser)


def test_pause_and_bulk_posts_need_the_csrf_token(dashboard: Dashboard, tmp_path: Path) -> None:
    job_id = dashboard.submit("Sleep", 60, delay=300)
    http = dashboard.http()
    http.csrf_token()  # the session
    attempts = [
        http.post("/api/pauses", {"kind": "all"}),
        http.post("/api/pauses/resume", {"kind": "all", "csrf_token": "0" * 64}),
        http.post("/api/jobs/cancel-matching", {"class": "Sleep"}),
        http.post("/api/jobs/retry-matching", {"state": "failed"}),
    ]
    for answer in attempts:
        assert answer.status == 403, answer.text
        assert "CSRF" in answer.text
    assert dashboard.job(job_id).state.value == "scheduled"
    assert paused_gauges(dashboard) == {}

    token = http.csrf_token()
    unknown = http.post("/api/jobs/cancel-matching", {"class": "NoSuchJob", "csrf_token": token})
    assert unknown.status == 400 and "unknown class" in unknown.json()["message"]
    final = http.post("/api/jobs/cancel-matching", {"state": "succeeded", "csrf_token": token})
    assert final.status == 400
    answer = http.post("/api/jobs/cancel-matching", {"class": "Sleep", "csrf_token": token})
    assert answer.status == 200 and answer.json()["done"] == 1
    assert dashboard.job(job_id).state.value == "cancelled"
