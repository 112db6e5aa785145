"""Escaping, CSRF, logins, exposure: the dashboard is not a way into the machine."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from tests.dashboard.support import (
    Dashboard,
    Http,
    answers_http,
    click,
    free_port,
    no_alerts,
    row_text,
    text_of,
    wait_live,
    wait_until,
)
from tests.support.waiting import wait_for
from tests.support.workspace import Workspace

XSS_PARAM = "<img src=x onerror=alert(1)>"
XSS_ERROR = "<script>alert(2)</script>"
TOKEN = "correct-horse-battery-staple-42"


def test_attacker_controlled_values_are_shown_as_text(
    dashboard: Dashboard, browser: WebDriver
) -> None:
    rendered = dashboard.submit("Echo", XSS_PARAM)
    failed = dashboard.submit("Fail", XSS_ERROR)
    dashboard.wait_state(rendered, "succeeded")
    dashboard.wait_state(failed, "failed")

    # Rendered by the server...
    browser.get(dashboard.url + "/dashboard/jobs")
    wait_live(browser)
    assert XSS_PARAM in row_text(browser, "recent", rendered)
    assert f"ValueError: {XSS_ERROR}" in row_text(browser, "failed", failed)
    # ...and by the page's script, live.
    live = dashboard.submit("Echo", XSS_PARAM, delay=300)
    wait_until(browser, lambda d: XSS_PARAM in row_text(d, "scheduled", live))
    live_failed = dashboard.submit("Fail", XSS_ERROR)
    wait_until(browser, lambda d: XSS_ERROR in row_text(d, "failed", live_failed))
    assert XSS_PARAM in text_of(browser, "#log-main")
    assert not browser.find_elements(By.CSS_SELECTOR, "main img, main script")

    browser.get(f"{dashboard.url}/dashboard/jobs/{rendered}")
    assert XSS_PARAM in text_of(browser, "#params")
    assert XSS_PARAM in text_of(browser, "#result")
    browser.get(f"{dashboard.url}/dashboard/jobs/{failed}")
    wait_live(browser)
    assert text_of(browser, "#error-summary") == f"ValueError: {XSS_ERROR}"
    click(browser, '#job-actions button[data-verb="retry"]')  # redrawn by the script
    wait_for(
        lambda: (job := dashboard.job(failed)).state.value == "failed" and len(job.history) == 2,
        what="the retried job to fail again",
    )
    wait_until(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#attempts tr")) == 2)
    wait_until(browser, lambda d: text_of(d, "#attempts").count(XSS_ERROR) == 2)
    assert not browser.find_elements(By.CSS_SELECTOR, "main img, main script")
    no_alerts(browser)


def test_a_post_without_the_csrf_token_is_refused_and_changes_nothing(
    dashboard: Dashboard,
) -> None:
    job_id = dashboard.submit("Sleep", 60, delay=300)
    failed = dashboard.submit("Fail")
    dashboard.wait_state(failed, "failed")
    http = dashboard.http()
    token = http.csrf_token()
    other = dashboard.http()
    other_token = other.csrf_token()
    assert other_token != token

    attempts = [
        http.post(f"/api/jobs/{job_id}/cancel"),
        http.post(f"/api/jobs/{job_id}/cancel", {"csrf_token": "0" * 64}),
        http.post(f"/api/jobs/{job_id}/cancel", headers={"X-CSRF-Token": "wrong"}),
        http.post(f"/api/jobs/{job_id}/cancel", {"csrf_token": other_token}),
        http.post(f"/api/jobs/{failed}/retry", {}, headers={"Accept": "text/html"}),
        http.post("/api/jobs/retry-failed"),
        # Another login has another session: a CSRF token alone proves nothing.
        dashboard.http().post(f"/api/jobs/{job_id}/cancel", {"csrf_token": token}),
    ]
    for answer in attempts:
        assert answer.status == 403, answer.text
        assert "CSRF" in answer.text
    assert dashboard.job(job_id).state.value == "scheduled"
    assert dashboard.job(failed).state.value == "failed"
    assert "cancelled" not in dashboard.workspace.error_log()
    # Reading never changes anything, and changing is never a GET.
    assert http.get(f"/api/jobs/{job_id}/cancel").status == 405

    answer = http.post(f"/api/jobs/{job_id}/cancel", headers={"X-CSRF-Token": token})
    assert answer.status == 200, answer.text
    assert answer.json()["job"]["state"] == "cancelled"
    refused = http.post(f"/api/jobs/{job_id}/cancel", headers={"X-CSRF-Token": token})
    assert refused.status == 409
    assert http.post("/api/jobs/99999/retry", headers={"X-CSRF-Token": token}).status == 404


@pytest.mark.parametrize(
    ("dashboard_settings", "complaint"),
    [
        ({"listen": "0.0.0.0:{port}"}, "is not a loopback address; set dashboard.token"),
        ({"listen": "0.0.0.0:{port}", "token": "short"}, "at least 16 characters"),
        ({"listen": "nonsense"}, "is not HOST:PORT"),
    ],
)
def test_an_exposed_dashboard_without_a_token_is_refused(
    workspace: Workspace, dashboard_settings: dict[str, str], complaint: str
) -> None:
    port = free_port()
    settings = {key: value.format(port=port) for key, value in dashboard_settings.items()}
    workspace.write_config({"dashboard": {"enabled": True, **settings}})
    daemon = workspace.start_daemon(ready=False)
    try:
        code = daemon.process.wait(30)
    except subprocess.TimeoutExpired:
        pytest.fail("bgjobd started with an exposed dashboard")
    assert code == 2, daemon.stderr
    assert complaint in daemon.stderr
    assert not workspace.socket_path.exists()


def test_a_token_guards_every_request(workspace: Workspace, browser: WebDriver) -> None:
    port = free_port()
    workspace.write_config(
        {"dashboard": {"enabled": True, "listen": f"0.0.0.0:{port}", "token": TOKEN}}
    )
    daemon = workspace.start_daemon()
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: answers_http(url, daemon), what="the dashboard")
    job_id = Dashboard(workspace, daemon, url, TOKEN).submit("Sleep", 60, delay=300)

    http = Http(url)
    page = http.get("/dashboard/jobs", Accept="text/html")
    assert page.status == 303
    assert page.headers["Location"] == "/login?next=/dashboard/jobs"
    for path in ("/api/jobs", f"/api/jobs/{job_id}", "/api/stats", "/metrics", "/api/events"):
        answer = http.get(path)
        assert answer.status == 401, path
        assert answer.headers["WWW-Authenticate"] == 'Bearer realm="bgjobs"'
    assert http.get("/api/stats", Authorization="Bearer wrong-token-wrong-token").status == 401
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    assert http.get("/api/stats", **bearer).status == 200
    assert http.get("/metrics", **bearer).status == 200
    # Scripts with the token need no CSRF token: no browser adds that header by itself.
    answer = http.post(f"/api/jobs/{job_id}/cancel", headers=bearer)
    assert answer.status == 200, answer.text

    browser.get(url + "/dashboard/jobs?state=cancelled")
    assert browser.current_url.startswith(url + "/login")
    browser.find_element(By.NAME, "token").send_keys("not the token")
    click(browser, "form[action='/login'] button")
    wait_until(browser, lambda d: "not the dashboard's token" in d.page_source)
    browser.find_element(By.NAME, "token").send_keys(TOKEN)
    click(browser, "form[action='/login'] button")
    wait_until(browser, lambda d: d.current_url == url + "/dashboard/jobs?state=cancelled")
    wait_live(browser)
    assert str(job_id) in text_of(browser, "#board")
    cookies = {cookie["name"]: cookie for cookie in browser.get_cookies()}
    login = cookies[f"bgjobs_auth_{port}"]
    assert login["httpOnly"] is True
    assert login["sameSite"] == "Strict"
    assert TOKEN not in login["value"]

    click(browser, ".logout button")
    wait_until(browser, lambda d: d.current_url.startswith(url + "/login"))
    status = browser.execute_async_script(
        "fetch('/api/stats').then((response) => arguments[0](response.status))"
    )
    assert status == 401


def test_a_foreign_host_name_is_refused(dashboard: Dashboard) -> None:
    """A page whose DNS name was rebound to 127.0.0.1 cannot read or drive the dashboard."""
    http = dashboard.http()
    assert http.get("/api/stats", Host="attacker.example").status == 403
    assert http.get("/dashboard/jobs", Host="attacker.example:8000").status == 403
    port = dashboard.url.rpartition(":")[2]
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}", f"LOCALHOST:{port}"):
        assert http.get("/api/stats", Host=host).status == 200, host


def test_every_response_carries_strict_headers(dashboard: Dashboard) -> None:
    http = dashboard.http()
    for path in ("/dashboard/jobs", "/api/stats", "/static/dashboard.js", "/", "/nowhere"):
        headers = http.get(path).headers
        csp = headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp
        assert "script-src 'self'" in csp
        assert "frame-ancestors 'none'" in csp
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["X-Frame-Options"] == "DENY"
    session = dashboard.anonymous().get("/login").headers["Set-Cookie"]
    assert "HttpOnly" in session
    assert "SameSite=Strict" in session


def test_static_files_stay_inside_their_directory(dashboard: Dashboard, tmp_path: Path) -> None:
    http = dashboard.http()
    for path in (
        "/static/../server.py",
        "/static/%2e%2e/server.py",
        "/static/..%2fserver.py",
        "/static/templates/jobs.html",
    ):
        answer = http.get(path)
        assert answer.status in (403, 404), path
        assert b"start_dashboard" not in answer.body
