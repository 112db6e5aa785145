"""The dashboard asks every local user for a login: pages, API and changes refused without
one, token guesses slowed down, sessions ended by logout and by a restart, one-time links
from `bgjobctl dashboard`, and a strict Host check."""

from __future__ import annotations

import http.client
import json
import re
import stat
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

from selenium.webdriver.remote.webdriver import WebDriver

from bgjobs.loginlink import login_path
from tests.dashboard.support import (
    Dashboard,
    Http,
    launch,
    start_dashboard,
    wait_live,
    wait_until,
)
from tests.support.other_user import as_nobody, needs_root
from tests.support.waiting import wait_for
from tests.support.workspace import Workspace

READS = ("/api/jobs", "/api/jobs/1", "/api/stats", "/api/overview", "/api/logs", "/api/events")


def port_of(dashboard: Dashboard) -> int:
    return int(dashboard.url.rpartition(":")[2])


def test_without_a_login_nothing_is_read_or_changed(dashboard: Dashboard) -> None:
    job_id = dashboard.submit("Sleep", 60, delay=300)
    anonymous = dashboard.anonymous()
    page = anonymous.get("/dashboard/jobs", Accept="text/html")
    assert page.status == 303
    assert page.headers["Location"] == "/login?next=/dashboard/jobs"
    assert anonymous.get(f"/dashboard/jobs/{job_id}", Accept="text/html").status == 303
    for path in (*READS, "/metrics"):
        answer = anonymous.get(path)
        assert answer.status == 401, path
        assert "Sleep" not in answer.text
    for path in (f"/api/jobs/{job_id}/cancel", f"/api/jobs/{job_id}/retry", "/logout"):
        assert anonymous.post(path).status == 403, path
    assert dashboard.job(job_id).state.value == "scheduled"

    token_file = dashboard.workspace.storage / "dashboard.token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert token_file.read_text().strip() == dashboard.token
    assert anonymous.get("/api/stats", Authorization=f"Bearer {dashboard.token}").status == 200


@needs_root
def test_another_user_is_refused_by_the_dashboard(dashboard: Dashboard) -> None:
    job_id = dashboard.submit("Sleep", 60, delay=300)

    def as_another_user() -> str:
        statuses = []
        for method, path in (("GET", "/api/jobs"), ("POST", f"/api/jobs/{job_id}/cancel")):
            request = urllib.request.Request(dashboard.url + path, method=method, data=None)
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    statuses.append(response.status)
            except urllib.error.HTTPError as exc:
                statuses.append(exc.code)
        return json.dumps(statuses)

    assert json.loads(as_nobody(as_another_user)) == [401, 403]
    assert dashboard.job(job_id).state.value == "scheduled"


def test_token_guesses_are_slowed_down(dashboard: Dashboard) -> None:
    owner = dashboard.http()
    guesser = dashboard.anonymous()
    csrf = _login_form_csrf(guesser)
    answers = Counter(
        guesser.post("/login", {"token": f"guess-{n:04d}-guess-guess", "csrf_token": csrf}).status
        for n in range(100)
    )
    assert answers[429] >= 90, answers
    assert answers[401] <= 10, answers
    # Locked: not even the right token is looked at, by form or by header.
    locked = guesser.post("/login", {"token": dashboard.token, "csrf_token": csrf})
    assert locked.status == 429
    assert int(locked.headers["Retry-After"]) >= 1
    assert guesser.get("/api/stats", Authorization=f"Bearer {dashboard.token}").status == 429
    nonce = guesser.get("/login/challenge").json()["nonce"]
    assert guesser.get(login_path(dashboard.token, nonce)).status == 429
    # A session opened before stays open.
    assert owner.get("/api/stats").status == 200


def test_a_session_ends_at_logout_and_at_a_restart(workspace: Workspace) -> None:
    dashboard = start_dashboard(workspace)
    first = dashboard.http()
    cookie = _auth_cookie(first, dashboard)
    assert first.get("/api/stats").status == 200
    assert first.post("/logout", {"csrf_token": first.csrf_token()}).status == 303
    assert _stats_with(dashboard, cookie) == 401

    second = dashboard.http()
    cookie = _auth_cookie(second, dashboard)
    assert _stats_with(dashboard, cookie) == 200
    dashboard.daemon.stop()
    restarted = launch(workspace, port_of(dashboard))
    assert restarted.token == dashboard.token  # the token stays; sessions do not
    assert _stats_with(restarted, cookie) == 401
    assert restarted.http().get("/api/stats").status == 200


def test_an_open_page_goes_to_the_login_after_a_restart(
    dashboard: Dashboard, browser: WebDriver
) -> None:
    browser.get(dashboard.url + "/dashboard/jobs")
    wait_live(browser)
    dashboard.daemon.stop()
    launch(dashboard.workspace, port_of(dashboard))
    wait_until(
        browser,
        lambda d: d.current_url.startswith(dashboard.url + "/login?next="),
        timeout=30,
    )


def test_a_one_time_link_from_bgjobctl_dashboard(dashboard: Dashboard) -> None:
    done = dashboard.workspace.bgjobctl("dashboard", "--no-browser", "--json")
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    assert printed["url"] == dashboard.url + "/"
    link = printed["login_url"]
    assert link.startswith(dashboard.url + "/login?nonce=")
    assert dashboard.token not in link
    browser = Http(dashboard.url)
    answer = browser.get(link.removeprefix(dashboard.url))
    assert answer.status == 200
    assert 'http-equiv="refresh" content="0; url=/dashboard/jobs"' in answer.text
    assert browser.get("/api/stats").status == 200
    # Used once: the same link logs nobody else in.
    assert Http(dashboard.url).get(link.removeprefix(dashboard.url)).status == 401
    # A link for a nonce the dashboard never issued is refused too.
    made_up = link.replace("nonce=", "nonce=x")
    assert Http(dashboard.url).get(made_up.removeprefix(dashboard.url)).status == 401


def test_bgjobctl_dashboard_opens_a_logged_in_browser_through_a_private_file(
    workspace: Workspace, browser: WebDriver, tmp_path: Path
) -> None:
    dashboard = start_dashboard(workspace)
    # The "browser" bgjobctl starts records what it was given (a command line all can read).
    given = tmp_path / "browser-was-given"
    fake = tmp_path / "fake-browser"
    fake.write_text(f'#!/bin/sh\nprintf "%s" "$1" > {given}\n')
    fake.chmod(0o700)
    workspace.env["BROWSER"] = str(fake)
    done = workspace.bgjobctl("dashboard")
    assert done.returncode == 0, done.stderr
    argument = wait_for(
        lambda: given.read_text() if given.exists() else "", what="the browser to start"
    )
    assert argument.startswith("file:///"), argument
    page = Path(argument.removeprefix("file://"))
    assert stat.S_IMODE(page.stat().st_mode) == 0o600
    assert "nonce=" in page.read_text() and dashboard.token not in page.read_text()
    try:
        browser.get(argument)
        wait_until(browser, lambda d: d.current_url == dashboard.url + "/dashboard/jobs")
        wait_live(browser)  # the page's own requests carry the session
        assert browser.title == "bgjobs dashboard"
    finally:
        page.unlink()


def test_bgjobctl_dashboard_with_the_dashboard_off(workspace: Workspace) -> None:
    done = workspace.bgjobctl("dashboard", "--no-browser")
    assert done.returncode == 2
    assert "the dashboard is disabled" in done.stderr


def test_only_this_dashboards_own_host_is_taken(dashboard: Dashboard) -> None:
    http = dashboard.http()
    port = port_of(dashboard)
    for host in (
        f"127.0.0.1:{port}@evil.example",
        f"evil.example:{port}",
        f"127.0.0.1:{port + 1}",
        "127.0.0.1",
        f"127.0.0.1:{port}/x",
    ):
        assert http.get("/api/stats", Host=host).status == 403, host
    assert http.get("/api/stats", Host=f"localhost:{port}").status == 200
    assert _absolute_form(dashboard, "http://evil.example/api/stats") == 403
    assert _absolute_form(dashboard, f"http://127.0.0.1:{port}@evil.example/api/stats") == 403
    assert _absolute_form(dashboard, f"http://127.0.0.1:{port}/api/stats") == 200


def test_public_metrics_leave_only_metrics_open(workspace: Workspace) -> None:
    dashboard = start_dashboard(workspace, {"dashboard": {"public_metrics": True}})
    anonymous = dashboard.anonymous()
    metrics = anonymous.get("/metrics")
    assert metrics.status == 200
    assert "bgjobs" in metrics.text
    assert anonymous.get("/api/stats").status == 401


def _login_form_csrf(client: Http) -> str:
    form = client.get("/login", Accept="text/html")
    match = re.search(r'name="csrf_token" value="([0-9a-f]+)"', form.text)
    assert match, form.text
    return match[1]


def _auth_cookie(client: Http, dashboard: Dashboard) -> str:
    name = f"bgjobs_auth_{port_of(dashboard)}"
    values = [cookie.value for cookie in client.cookies if cookie.name == name]
    assert len(values) == 1 and values[0], values
    return values[0] or ""


def _stats_with(dashboard: Dashboard, cookie: str) -> int:
    """GET /api/stats from a fresh client presenting a copied session cookie alone."""
    name = f"bgjobs_auth_{port_of(dashboard)}"
    return Http(dashboard.url).get("/api/stats", Cookie=f"{name}={cookie}").status


def _absolute_form(dashboard: Dashboard, target: str) -> int:
    """Send `GET <absolute URL>` with the dashboard's own Host header and the token."""
    port = port_of(dashboard)
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        connection.putrequest("GET", target, skip_host=True)
        connection.putheader("Host", f"127.0.0.1:{port}")
        connection.putheader("Authorization", f"Bearer {dashboard.token}")
        connection.endheaders()
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()
