"""The jobs page in a real headless Chromium against a real daemon."""

from __future__ import annotations

import time
from pathlib import Path

from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select

from bgjobs.model import Priority
from tests.dashboard.support import (
    Dashboard,
    button,
    click,
    ids_in,
    no_alerts,
    row_text,
    text_of,
    texts_of,
    wait_live,
    wait_until,
)
from tests.support.procs import is_gone
from tests.support.waiting import wait_for

LISTED = '[data-section="listing"] tbody tr[data-job]'
QUEUED = '[data-section="queued"] tbody tr[data-job]'


def listed(driver: WebDriver) -> list[int]:
    return ids_in(driver, LISTED)


def test_root_redirects_to_the_jobs_page(dashboard: Dashboard, browser: WebDriver) -> None:
    answer = dashboard.http().get("/")
    assert answer.status == 302
    assert answer.headers["Location"] == "/dashboard/jobs"
    browser.get(dashboard.url + "/")
    assert browser.current_url == dashboard.url + "/dashboard/jobs"
    assert browser.title == "bgjobs dashboard"


def test_a_running_job_appears_live_and_its_cancel_button_kills_it(
    dashboard: Dashboard, browser: WebDriver, tmp_path: Path
) -> None:
    browser.get(dashboard.url + "/dashboard/jobs")
    wait_live(browser)
    browser.execute_script("window.__sameDocument = true")
    pids = tmp_path / "pids"
    submitted = time.monotonic()
    job_id = dashboard.submit("SpawnGrandchild", str(pids), 60)

    wait_until(browser, lambda d: row_text(d, "running", job_id))
    appeared = time.monotonic() - submitted
    assert browser.execute_script("return window.__sameDocument") is True, "the page reloaded"
    worker, grandchild = (int(pid) for pid in wait_for(pids.read_text, what="pids").split())
    row = row_text(browser, "running", job_id)
    assert "SpawnGrandchild::handle" in row
    assert "1 of 1" in row
    assert str(worker) in row
    print(f"the running job showed {appeared:.2f}s after its submit")

    click(browser, button("running", job_id, "cancel"))
    dashboard.wait_state(job_id, "cancelled")
    wait_for(lambda: is_gone(worker) and is_gone(grandchild), what="worker and grandchild")
    wait_until(browser, lambda d: not row_text(d, "running", job_id))
    wait_until(browser, lambda d: "cancelled" in row_text(d, "recent", job_id))
    assert dashboard.job(job_id).reason == "cancelled from the dashboard"
    assert browser.execute_script("return window.__sameDocument") is True
    assert not dashboard.workspace.lock_files()
    no_alerts(browser)


def test_failed_jobs_are_retried_by_their_buttons(
    dashboard: Dashboard, browser: WebDriver, tmp_path: Path
) -> None:
    counters = [tmp_path / f"flaky-{n}" for n in range(3)]
    ids = [dashboard.submit("Flaky", str(counter), 1) for counter in counters]
    for job_id in ids:
        dashboard.wait_state(job_id, "failed")
    browser.get(dashboard.url + "/dashboard/jobs")
    wait_live(browser)

    assert "ConnectionRefusedError: call 1 refused" in row_text(browser, "failed", ids[0])
    click(browser, button("failed", ids[0], "retry"))
    assert dashboard.wait_state(ids[0], "succeeded").attempts == 1  # fresh attempts
    wait_until(browser, lambda d: "succeeded" in row_text(d, "recent", ids[0]))
    wait_until(browser, lambda d: not row_text(d, "failed", ids[0]))

    click(browser, '[data-section="failed"] button[data-verb="retry-failed"]')
    for job_id in ids[1:]:
        dashboard.wait_state(job_id, "succeeded")
    failed = '[data-section="failed"] tbody'
    wait_until(browser, lambda d: "No failed jobs." in d.find_element(By.CSS_SELECTOR, failed).text)
    assert [counter.read_text() for counter in counters] == ["2", "2", "2"]
    no_alerts(browser)


def test_filters_search_and_pagination(dashboard: Dashboard, browser: WebDriver) -> None:
    apple = dashboard.submit("Echo", "apple")
    banana = dashboard.submit("Echo", "banana")
    failing = dashboard.submit("Fail", "rotten cherry")
    bulk = [dashboard.submit("Echo", f"bulk-{n}") for n in range(22)]
    for job_id in [apple, banana, *bulk]:
        dashboard.wait_state(job_id, "succeeded")
    dashboard.wait_state(failing, "failed")
    succeeded = sorted([apple, banana, *bulk], reverse=True)
    browser.get(dashboard.url + "/dashboard/jobs")

    Select(browser.find_element(By.NAME, "state")).select_by_value("failed")
    wait_until(browser, lambda d: "state=failed" in d.current_url and listed(d) == [failing])

    browser.get(dashboard.url + "/dashboard/jobs")
    Select(browser.find_element(By.NAME, "class")).select_by_value("Echo")
    wait_until(browser, lambda d: "class=Echo" in d.current_url and len(listed(d)) == 24)
    browser.find_element(By.NAME, "q").send_keys("banana")
    click(browser, "#filters button[type=submit]")
    wait_until(browser, lambda d: "q=banana" in d.current_url and listed(d) == [banana])

    browser.get(f"{dashboard.url}/dashboard/jobs?q={failing}")
    assert failing in listed(browser)
    browser.get(f"{dashboard.url}/dashboard/jobs?q=no-such-thing")
    assert listed(browser) == []
    assert "No job matches." in text_of(browser, "#board")

    browser.get(dashboard.url + "/dashboard/jobs?state=succeeded&per_page=10")
    assert listed(browser) == succeeded[:10]
    assert text_of(browser, "#pager-text").startswith("1\u201310 of 24")
    click(browser, "#pager-next")
    wait_until(browser, lambda d: "page=2" in d.current_url and listed(d) == succeeded[10:20])
    assert "11\u201320 of 24" in text_of(browser, "#pager-text")

    # A filtered listing is live too.
    browser.get(dashboard.url + "/dashboard/jobs?state=succeeded")
    wait_live(browser)
    late = dashboard.submit("Echo", "late")
    wait_until(browser, lambda d: listed(d)[:1] == [late])
    no_alerts(browser)


def test_queued_jobs_are_listed_in_dispatch_order(
    dashboard: Dashboard, browser: WebDriver, tmp_path: Path
) -> None:
    blockers = [dashboard.submit("Sleep", 60, str(tmp_path / f"b{n}")) for n in range(2)]
    for job_id in blockers:
        dashboard.wait_state(job_id, "running")
    low = dashboard.submit("Echo", "low", priority=Priority.LOW)
    high = dashboard.submit("Echo", "high", priority=Priority.HIGH)
    medium = dashboard.submit("Echo", "medium")
    high2 = dashboard.submit("Echo", "high again", priority=Priority.HIGH)

    browser.get(dashboard.url + "/dashboard/jobs")
    assert ids_in(browser, QUEUED) == [high, high2, medium, low]
    positions = browser.find_elements(By.CSS_SELECTOR, f"{QUEUED} .c-position")
    assert [cell.text for cell in positions] == ["1", "2", "3", "4"]
    browser.get(dashboard.url + "/dashboard/jobs?state=queued")
    assert listed(browser) == [high, high2, medium, low]
    assert "dispatch order" in text_of(browser, "#listing-summary")

    # Cancelling from the queue takes the job out of it, live.
    browser.get(dashboard.url + "/dashboard/jobs")
    wait_live(browser)
    click(browser, button("queued", medium, "cancel"))
    dashboard.wait_state(medium, "cancelled")
    wait_until(browser, lambda d: ids_in(d, QUEUED) == [high, high2, low])


def test_counts_chart_and_logs_with_no_external_requests(
    dashboard: Dashboard, browser: WebDriver
) -> None:
    done = [dashboard.submit("Echo", n) for n in range(3)]
    failed = dashboard.submit("Fail", "broken on purpose")
    for job_id in done:
        dashboard.wait_state(job_id, "succeeded")
    dashboard.wait_state(failed, "failed")
    browser.get(dashboard.url + "/dashboard/jobs")
    wait_live(browser)

    count = browser.find_element(By.CSS_SELECTOR, '[data-count="succeeded"]')
    assert count.text == "3"
    assert text_of(browser, '[data-count="failed"]') == "1"
    assert browser.find_elements(By.CSS_SELECTOR, "#chart rect.bar-succeeded")
    assert browser.find_elements(By.CSS_SELECTOR, "#chart rect.bar-failed")
    error_log = text_of(browser, "#log-errors")
    assert "ValueError: broken on purpose" in error_log
    lines = texts_of(browser, "#log-main .log-line")
    started = next(
        i for i, text in enumerate(lines) if f"job {done[-1]} attempt 1/1 started" in text
    )
    ended = next(
        i for i, text in enumerate(lines) if f"job {done[-1]} attempt 1/1 succeeded" in text
    )
    assert ended < started, "the newest line comes first"

    # Counts, chart and logs follow new jobs without a reload.
    extra = dashboard.submit("Echo", "one more")
    dashboard.wait_state(extra, "succeeded")
    wait_until(browser, lambda d: count.text == "4")
    wait_until(browser, lambda d: f"job {extra} attempt 1/1" in text_of(d, "#log-main"))

    resources = browser.execute_script(
        "return performance.getEntriesByType('resource').map((entry) => entry.name)"
    )
    assert resources, "the page loaded no script or style"
    assert all(name.startswith(dashboard.url + "/") for name in resources), resources
    no_alerts(browser)


def test_without_javascript_forms_post_and_redirect_back(dashboard: Dashboard) -> None:
    http = dashboard.http()
    page = http.get("/dashboard/jobs", Accept="text/html")
    assert '<noscript><meta http-equiv="refresh" content="5"></noscript>' in page.text
    job_id = dashboard.submit("Sleep", 60, delay=300)
    token = http.csrf_token()
    answer = http.post(
        f"/api/jobs/{job_id}/cancel",
        {"csrf_token": token, "next": "/dashboard/jobs?state=scheduled"},
        headers={"Accept": "text/html"},
    )
    assert answer.status == 303
    assert answer.headers["Location"] == (
        f"/dashboard/jobs?state=scheduled&notice=cancelled&job={job_id}"
    )
    assert dashboard.job(job_id).state.value == "cancelled"
    shown = http.get(answer.headers["Location"], Accept="text/html")
    assert f"Job #{job_id} cancelled." in shown.text
    # A redirect never leaves the site.
    again = http.post(
        f"/api/jobs/{job_id}/cancel",
        {"csrf_token": token, "next": "//evil.example/"},
        headers={"Accept": "text/html"},
    )
    assert again.headers["Location"].startswith("/dashboard/jobs?notice=refused")
