"""A job's detail page: every field, each attempt, the captured output, the chain."""

from __future__ import annotations

from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from bgjobs.model import ChainLink
from tests.dashboard.support import (
    Dashboard,
    click,
    no_alerts,
    start_dashboard,
    text_of,
    wait_live,
    wait_until,
)
from tests.support.workspace import Workspace


def fields(driver: WebDriver) -> dict[str, str]:
    pairs: list[list[str]] = driver.execute_script(
        "return [...document.querySelectorAll('#fields div')]"
        ".map((row) => [row.querySelector('dt').innerText, row.querySelector('dd').innerText])"
    )
    return dict(pairs)


def test_detail_shows_fields_attempts_traceback_and_output(
    workspace: Workspace, browser: WebDriver
) -> None:
    dashboard = start_dashboard(
        workspace, {"jobs": {"Fail": {"retry_attempts": 1, "retry_delay_seconds": 0}}}
    )
    failing = dashboard.submit("Fail", "disk full")
    dashboard.wait_state(failing, "failed")

    dashboard.log_in(browser)
    browser.get(f"{dashboard.url}/dashboard/jobs/{failing}")
    assert browser.title == f"#{failing} Fail::handle · bgjobs"
    record = fields(browser)
    assert record["ID"] == str(failing)
    assert record["Class"] == "Fail"
    assert record["Method"] == "handle"
    assert record["State"] == "failed"
    assert record["Priority"] == "medium"
    assert record["Attempts"] == "2 of 2"
    assert record["Timeout"] == "30.0 s"
    assert record["Node"] == dashboard.job(failing).owner != ""
    for key in ("Created", "Run at", "Started", "Finished", "Duration", "Worker pid"):
        assert record[key], key
    assert text_of(browser, "#params") == '[\n  "disk full"\n]'
    assert text_of(browser, "#error-summary") == "ValueError: disk full"

    attempts = browser.find_elements(By.CSS_SELECTOR, "#attempts tr")
    assert len(attempts) == 2
    for number, row in enumerate(attempts, start=1):
        assert row.text.startswith(f"{number} failed")
        assert "ValueError: disk full" in row.text
    traceback = attempts[0].find_element(By.CSS_SELECTOR, "pre.trace")
    assert not traceback.is_displayed()
    attempts[0].find_element(By.CSS_SELECTOR, "summary").click()
    assert "raise ValueError(message)" in traceback.text
    assert "Traceback (most recent call last)" in traceback.text
    assert browser.find_element(By.ID, "output-none").is_displayed()

    printer = dashboard.submit("Printer", "hello <world>")
    dashboard.wait_state(printer, "succeeded")
    browser.get(f"{dashboard.url}/dashboard/jobs/{printer}")
    output = text_of(browser, "#output")
    for line in ("out: hello <world>", "err: hello <world>", "child: hello <world>"):
        assert line in output
    assert text_of(browser, "#result") == '"hello <world>"'
    assert not browser.find_element(By.ID, "error-box").is_displayed()
    assert text_of(browser, "#attempts tr").startswith("1 succeeded")
    no_alerts(browser)


def test_detail_shows_the_chain_and_follows_it_live(
    dashboard: Dashboard, browser: WebDriver
) -> None:
    first = dashboard.submit(
        "Add",
        1,
        2,
        delay=300,
        then=[ChainLink("Add", "handle", [10]), ChainLink("Add", "handle", [100])],
    )
    browser.get(f"{dashboard.url}/dashboard/jobs/{first}")
    wait_live(browser)
    links = browser.find_elements(By.CSS_SELECTOR, "#chain li")
    assert [link.text.split()[0] for link in links] == [
        f"#{first}",
        f"#{first + 1}",
        f"#{first + 2}",
    ]
    assert "scheduled" in links[0].text
    assert "waiting" in links[1].text
    assert fields(browser)["Chain"] == "link 1 of 3"
    browser.execute_script("window.__sameDocument = true")

    # Cancelled through bgjobctl: the page follows without a reload.
    done = dashboard.workspace.bgjobctl("cancel", str(first))
    assert done.returncode == 0, done.stderr
    wait_until(browser, lambda d: text_of(d, "#job-state") == "cancelled")
    wait_until(
        browser,
        lambda d: all(
            "cancelled" in li.text for li in d.find_elements(By.CSS_SELECTOR, "#chain li")
        ),
    )
    assert browser.execute_script("return window.__sameDocument") is True

    # Retried with its button: the whole chain runs, link by link.
    click(browser, '#job-actions button[data-verb="retry"]')
    dashboard.wait_state(first + 2, "succeeded")
    wait_until(
        browser,
        lambda d: (
            [li.text.split()[2] for li in d.find_elements(By.CSS_SELECTOR, "#chain li")]
            == ["succeeded"] * 3
        ),
    )
    assert text_of(browser, "#result") == "3.0"
    browser.get(f"{dashboard.url}/dashboard/jobs/{first + 2}")
    assert text_of(browser, "#result") == "113.0"
    assert text_of(browser, "#chain li.current").startswith(f"#{first + 2}")
    no_alerts(browser)


def test_a_missing_job_is_a_404_page(dashboard: Dashboard) -> None:
    answer = dashboard.http().get("/dashboard/jobs/424242", Accept="text/html")
    assert answer.status == 404
    assert "There is no job #424242." in answer.text
    assert dashboard.http().get("/dashboard/jobs/not-a-number").status == 404
