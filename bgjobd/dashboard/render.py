"""Rendering pages: the Jinja2 environment (autoescape on: params, results and errors are
attacker-controlled) and the context every page gets."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import aiohttp_jinja2
import jinja2
from aiohttp import web

from bgjobd.dashboard.columns import (
    SECTIONS,
    listing_columns,
    nodes_signature,
    signature,
    table_signature,
)
from bgjobd.dashboard.security import GUARD, SESSION
from bgjobs.model import JobState

HERE: Final = Path(__file__).parent
TEMPLATES: Final = HERE / "templates"
STATIC: Final = HERE / "static"
DEFAULT_PAGE: Final = "/dashboard/jobs"

NOTICES: Final = {
    "cancelled": "Job #{job} cancelled.",
    "retried": "Job #{job} queued again with fresh attempts.",
    "retried_all": "{count} failed job(s) queued again.",
    "not_found": "There is no job #{job}.",
    "refused": "Job #{job} is {state}: that cannot be done now.",
    "paused": "Paused: {count} pause(s) in force. Running jobs finish; the others wait.",
    "resumed": "Resumed: {count} pause(s) left in force.",
    "cancelled_matching": "{count} matching job(s) cancelled.",
    "retried_matching": "{count} matching job(s) queued again.",
    "bad_filter": "Nothing was changed: no such class, or no job of that state can be.",
}


def asset_urls() -> dict[str, str]:
    """Static file URLs carrying a hash of their content, so an upgraded daemon's pages
    never run a browser's cached copy of the old script."""
    return {
        path.name: f"/static/{path.name}?v={hashlib.sha256(path.read_bytes()).hexdigest()[:12]}"
        for path in sorted(STATIC.iterdir())
        if path.is_file()
    }


def setup(app: web.Application) -> None:
    env = aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        default_helpers=False,
    )
    env.globals["asset"] = asset_urls()
    env.globals["states"] = [state.value for state in JobState]
    env.globals["sections"] = SECTIONS
    env.globals["listing_columns"] = listing_columns
    env.filters["signature"] = table_signature
    env.filters["sig"] = signature
    env.filters["node_signature"] = nodes_signature


def safe_next(value: object) -> str:
    """A place on this site to go back to; anything else (another site, `//host`) is
    replaced by the main page."""
    if (
        isinstance(value, str)
        and value.startswith("/")
        and not value.startswith("//")
        and "\\" not in value
        and value.isprintable()
        and len(value) < 2000
    ):
        return value
    return DEFAULT_PAGE


def notice(query: Mapping[str, str]) -> str | None:
    """The message a form's redirect asked for, built from known parts only."""
    template = NOTICES.get(query.get("notice", ""))
    if template is None:
        return None
    job, count, state = query.get("job", ""), query.get("count", ""), query.get("state", "")
    if not (job.isdigit() or count.isdigit()):
        return None
    if state and state not in JobState.__members__.values():
        state = "in another state"
    return template.format(job=job, count=count, state=state or "in another state")


def render(
    request: web.Request, template: str, context: dict[str, Any], *, status: int = 200
) -> web.Response:
    guard = request.app[GUARD]
    response = aiohttp_jinja2.render_template(
        template,
        request,
        {
            **context,
            "csrf_token": guard.csrf_token(request[SESSION]),
            "logged_in": guard.logged_in(request),
            "here": request.path_qs,
            "now": round(time.time(), 3),
        },
        status=status,
    )
    response.headers["Cache-Control"] = "no-store"
    return response


def error_page(request: web.Request, status: int, message: str) -> web.Response:
    return render(request, "error.html", {"status": status, "message": message}, status=status)
