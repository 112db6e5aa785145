"""A real daemon with its dashboard on a free port, a plain HTTP client with cookies, and a
real headless Chromium driven by Selenium."""

from __future__ import annotations

import json
import os
import re
import socket
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from http.cookiejar import CookieJar
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode

import pytest
from selenium import webdriver
from selenium.common.exceptions import (
    NoAlertPresentException,
    StaleElementReferenceException,
)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.wait import WebDriverWait

from bgjobs.loginlink import login_path
from bgjobs.model import JobSpec
from tests.support.procs import MARKER_ENV
from tests.support.waiting import wait_for
from tests.support.workspace import DaemonProcess, Workspace

T = TypeVar("T")

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROME_ARGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)
# Every page load runs this first: an alert that fired anyway is recorded, not shown.
ALERT_TRAP = (
    "window.__alerts = [];"
    "for (const name of ['alert', 'confirm', 'prompt']) {"
    "  window[name] = (message) => { window.__alerts.push(String(message)); };"
    "}"
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode()

    def json(self) -> Any:
        return json.loads(self.body)


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class Http:
    """HTTP as a browser without JavaScript does it: cookies kept, redirects shown."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.cookies = CookieJar()
        self._opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.cookies), _NoRedirects()
        )

    def request(
        self,
        method: str,
        path: str,
        *,
        form: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Answer:
        data = urlencode(form).encode() if form is not None else None
        request = urllib.request.Request(
            self.base + path, data=data, method=method, headers=headers or {}
        )
        if data is not None:
            request.add_header("Content-Type", "application/x-www-form-urlencoded")
        try:
            with self._opener.open(request, timeout=30) as response:
                return Answer(response.status, dict(response.headers), response.read())
        except urllib.error.HTTPError as exc:
            with exc:
                return Answer(exc.code, dict(exc.headers), exc.read())

    def get(self, path: str, **headers: str) -> Answer:
        return self.request("GET", path, headers=headers)

    def post(
        self, path: str, form: dict[str, str] | None = None, headers: dict[str, str] | None = None
    ) -> Answer:
        return self.request("POST", path, form=form if form is not None else {}, headers=headers)

    def log_in(self, token: str) -> Http:
        """Log in the way `bgjobctl dashboard` does: a one-time link for a fresh nonce."""
        nonce = self.get("/login/challenge").json()["nonce"]
        answer = self.get(login_path(token, nonce))
        assert answer.status == 200 and "Logged in" in answer.text, answer.text
        return self

    def csrf_token(self) -> str:
        """Load the main page (which sets the session cookie) and read its CSRF token."""
        page = self.get("/dashboard/jobs", Accept="text/html")
        assert page.status == 200, page.text
        match = re.search(r'<meta name="csrf-token" content="([0-9a-f]+)">', page.text)
        assert match, "no CSRF token on the page"
        return match[1]


@dataclass
class Dashboard:
    workspace: Workspace
    daemon: DaemonProcess
    url: str
    token: str

    def http(self) -> Http:
        """A client logged in with a session of its own."""
        return Http(self.url).log_in(self.token)

    def anonymous(self) -> Http:
        return Http(self.url)

    def log_in(self, driver: WebDriver) -> None:
        """Log the browser in through a one-time link; it lands on the jobs page."""
        nonce = self.anonymous().get("/login/challenge").json()["nonce"]
        driver.get(self.url + login_path(self.token, nonce))
        wait_until(driver, lambda d: d.current_url.startswith(self.url + "/dashboard/jobs"))

    def submit(self, class_name: str, *params: Any, **options: Any) -> int:
        client = self.workspace.client()
        try:
            submitted = client.submit(
                [JobSpec(class_name=class_name, method="handle", params=list(params), **options)]
            )
        finally:
            client.close()
        return submitted.ids[0]

    def job(self, job_id: int) -> Any:
        client = self.workspace.client()
        try:
            return client.get(job_id)
        finally:
            client.close()

    def wait_state(self, job_id: int, *states: str, timeout: float = 30) -> Any:
        return wait_for(
            lambda: (job := self.job(job_id)).state.value in states and job,
            timeout=timeout,
            what=f"job {job_id} to be {' or '.join(states)}",
        )


def answers_http(url: str, daemon: DaemonProcess) -> bool:
    if daemon.process.poll() is not None:
        raise AssertionError(f"bgjobd exited with {daemon.process.returncode}:\n{daemon.stderr}")
    try:
        with urllib.request.urlopen(url + "/login", timeout=2):
            return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False


def start_dashboard(workspace: Workspace, extra: dict[str, Any] | None = None) -> Dashboard:
    """The test configuration with the dashboard on a free loopback port (and `extra`)."""
    port = free_port()
    settings: dict[str, Any] = {"dashboard": {"enabled": True, "listen": f"127.0.0.1:{port}"}}
    for key, value in (extra or {}).items():
        settings[key] = {**settings.get(key, {}), **value} if isinstance(value, dict) else value
    workspace.write_config(settings)
    return launch(workspace, port)


def launch(workspace: Workspace, port: int) -> Dashboard:
    """Start the daemon of the workspace's configuration; wait for its dashboard."""
    daemon = workspace.start_daemon()
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: answers_http(url, daemon), timeout=20, what="the dashboard to answer")
    return Dashboard(workspace, daemon, url, dashboard_token(workspace))


def dashboard_token(workspace: Workspace) -> str:
    """The token the daemon logs in with: configured, or made in its storage on start."""
    settings = workspace.settings.get("dashboard", {})
    if settings.get("token"):
        return str(settings["token"])
    storage = Path(workspace.settings.get("daemon", {}).get("storage", "storage"))
    return (workspace.root / storage / "dashboard.token").read_text().strip()


def chromium_available() -> bool:
    return CHROMIUM.exists() and CHROMEDRIVER.exists()


def require_chromium() -> None:
    """On CI a missing browser is a failure; on a laptop the browser tests are skipped."""
    if chromium_available():
        return
    message = f"Chromium not installed ({CHROMIUM}, {CHROMEDRIVER})"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def open_chromium(
    profile: Path, marker: str, *, width: int = 1366, height: int = 900
) -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in CHROME_ARGS:
        options.add_argument(argument)
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument(f"--window-size={width},{height}")
    # The marker lets the workspace find and kill anything the browser leaves behind.
    service = Service(executable_path=str(CHROMEDRIVER), env={**os.environ, MARKER_ENV: marker})
    driver = webdriver.Chrome(service=service, options=options)
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": ALERT_TRAP})
    return driver


def wait_until(driver: WebDriver, condition: Callable[[WebDriver], T], timeout: float = 10) -> T:
    """Selenium's wait, polled often: live updates take well under a second."""
    wait = WebDriverWait(
        driver,
        timeout,
        poll_frequency=0.05,
        # A live refresh may replace an element between finding and reading it.
        ignored_exceptions=(StaleElementReferenceException,),
    )
    result: T = wait.until(condition)
    return result


def wait_live(driver: WebDriver) -> None:
    """Until the page's event stream is connected (and its first refresh is on its way)."""
    wait_until(
        driver, lambda d: d.find_element(By.ID, "live").get_attribute("data-state") == "live"
    )


def no_alerts(driver: WebDriver) -> None:
    """No alert, confirm or prompt was called on this page, and none is open."""
    try:
        text = driver.switch_to.alert.text
    except NoAlertPresentException:
        pass
    else:
        raise AssertionError(f"an alert is open: {text!r}")
    assert driver.execute_script("return window.__alerts") == []


def ids_in(driver: WebDriver, rows: str) -> list[int]:
    """The job ids of the rows matching a CSS selector, read in one step (a live refresh
    may replace rows at any moment)."""
    found: list[int] = driver.execute_script(
        "return [...document.querySelectorAll(arguments[0])].map((row) => Number(row.dataset.job))",
        rows,
    )
    return found


def row_text(driver: WebDriver, section: str, job_id: int) -> str:
    """The text of a job's row in a section of the page, "" when it is not there."""
    text: str = driver.execute_script(
        "const row = document.querySelector(arguments[0]);"
        "return row ? row.innerText.replaceAll('\\t', ' ') : ''",
        f'[data-section="{section}"] tr[data-job="{job_id}"]',
    )
    return text


def click(driver: WebDriver, css: str) -> None:
    """Click the element, finding it again if a live refresh replaced it meanwhile."""

    def clicked(d: WebDriver) -> bool:
        d.find_element(By.CSS_SELECTOR, css).click()
        return True

    wait_until(driver, clicked)


def button(section: str, job_id: int, verb: str) -> str:
    return f'[data-section="{section}"] tr[data-job="{job_id}"] button[data-verb="{verb}"]'


def text_of(driver: WebDriver, css: str) -> str:
    """The rendered text of the first element matching `css`, read in one step."""
    text: str = driver.execute_script(
        "const node = document.querySelector(arguments[0]);"
        "return node ? node.innerText.replaceAll('\\t', ' ') : ''",
        css,
    )
    return text


def texts_of(driver: WebDriver, css: str) -> list[str]:
    """The text of every element matching `css` (seen or scrolled away), in one step."""
    texts: list[str] = driver.execute_script(
        "return [...document.querySelectorAll(arguments[0])].map((node) => node.textContent)",
        css,
    )
    return texts
