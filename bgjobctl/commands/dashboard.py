"""`bgjobctl dashboard`: open the daemon's dashboard in a browser, already logged in.

It reads the dashboard's token (`[dashboard] token`, else the 0600 `dashboard.token` file, so
only the daemon's user can), gets a nonce from the dashboard and opens a one-time link that
proves the token with an HMAC of that nonce (`bgjobs.loginlink`): the token itself is never
sent, nor shown in a URL or a browser's history, and the link itself reaches the browser
through a 0600 file, not on a command line other users can read (`ps`).
"""

from __future__ import annotations

import argparse
import contextlib
import html
import json
import os
import tempfile
import time
import urllib.request
import webbrowser
from pathlib import Path
from typing import Final

from bgjobctl.context import CommandContext
from bgjobs.config import Config
from bgjobs.errors import BgjobsError, ConfigError, DaemonUnreachable, ExitCode
from bgjobs.loginlink import login_path

HELP = "open the dashboard in a browser, logged in (a one-time login link)"
TIMEOUT: Final = 10.0
PAGE_PREFIX: Final = "bgjobs-login-"
STALE_PAGE_SECONDS: Final = 300.0
WILDCARD_HOSTS: Final = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}  # noqa: S104


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-browser", action="store_true", help="only print the link (valid for a minute)"
    )


def run(ctx: CommandContext) -> int:
    config = ctx.config
    base = base_url(config)
    link = base + login_path(read_token(config), fetch_nonce(base))
    if ctx.json:
        ctx.print_json({"url": base + "/", "login_url": link})
    else:
        ctx.print(f"dashboard: {base}/")
        ctx.print(f"one-time login link (valid for a minute): {link}")
    if not ctx.args.no_browser:
        webbrowser.open(redirect_file(link).as_uri())
    return ExitCode.OK


def redirect_file(link: str) -> Path:
    """A 0600 page that sends the browser on to `link`: a browser is started with its URL
    on the command line, where every user of the host can read it (`ps`), and whoever
    opened the link first would be logged in. The file's name tells them nothing."""
    remove_stale_pages()
    fd, name = tempfile.mkstemp(prefix=PAGE_PREFIX, suffix=".html")  # always 0600
    target = html.escape(link, quote=True)
    with os.fdopen(fd, "w") as page:
        page.write(
            f'<!doctype html><meta charset="utf-8"><meta name="referrer" content="no-referrer">'
            f'<meta http-equiv="refresh" content="0; url={target}">'
            f'<title>bgjobs</title><a href="{target}">Open the bgjobs dashboard</a>\n'
        )
    return Path(name)


def base_url(config: Config) -> str:
    settings = config.settings.dashboard
    if not settings.enabled:
        raise ConfigError("the dashboard is disabled ([dashboard] enabled = false)")
    host, _, port = settings.listen.rpartition(":")
    host = host.strip("[]")
    host = WILDCARD_HOSTS.get(host, host)
    return f"http://{f'[{host}]' if ':' in host else host}:{port}"


def read_token(config: Config) -> str:
    if config.settings.dashboard.token:
        return config.settings.dashboard.token
    path = config.dashboard_token_path
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        raise DaemonUnreachable(
            f"{path} does not exist yet: bgjobd makes it when it starts with the dashboard on"
        ) from None
    except PermissionError:
        raise BgjobsError(
            f"cannot read {path}: only the daemon's user may open the dashboard this way"
        ) from None


def remove_stale_pages() -> None:
    """Earlier runs' pages (their links expired long ago), so they do not pile up."""
    for page in Path(tempfile.gettempdir()).glob(PAGE_PREFIX + "*.html"):
        with contextlib.suppress(OSError):
            info = page.lstat()
            if info.st_uid == os.geteuid() and time.time() - info.st_mtime > STALE_PAGE_SECONDS:
                page.unlink()


def fetch_nonce(base: str) -> str:
    """A nonce from the dashboard (nothing secret is sent to get it)."""
    request = urllib.request.Request(  # noqa: S310  # always http://HOST:PORT
        base + "/login/challenge", headers={"Accept": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:  # noqa: S310
            nonce = json.load(response)["nonce"]
    except (OSError, ValueError, KeyError) as exc:
        raise DaemonUnreachable(f"the dashboard does not answer at {base}: {exc}") from None
    if not isinstance(nonce, str) or not nonce:
        raise BgjobsError(f"the dashboard at {base} gave no login nonce")
    return nonce
