"""Logging in (with the token, or a one-time link from `bgjobctl dashboard`) and out."""

from __future__ import annotations

from aiohttp import web

from bgjobd.dashboard.api import json_response
from bgjobd.dashboard.context import guard_of
from bgjobd.dashboard.render import render, safe_next
from bgjobd.dashboard.security import client_of, too_many_tries

WRONG_GUESS = "That is not the dashboard's token."
STALE_LINK = "That login link was used already or has expired: run `bgjobctl dashboard` again."


async def form(request: web.Request) -> web.StreamResponse:
    guard = guard_of(request)
    target = safe_next(request.query.get("next"))
    if "nonce" in request.query:
        return _one_time_link(request, target)
    if guard.logged_in(request):
        raise web.HTTPSeeOther(target)
    return _form(request, target, None)


async def submit(request: web.Request) -> web.StreamResponse:
    guard = guard_of(request)
    data = await request.post()
    target = safe_next(data.get("next"))
    client = client_of(request)
    wait = guard.limiter.retry_after(client)
    if wait is not None:
        return too_many_tries(request, wait)
    token = data.get("token")
    if not isinstance(token, str) or not guard.token_ok(token):
        guard.limiter.failed(client)
        return _form(request, target, WRONG_GUESS, status=401)
    response = web.HTTPSeeOther(target)
    guard.start_session(response)
    raise response


async def logout(request: web.Request) -> web.StreamResponse:
    response = web.HTTPSeeOther("/login")
    guard_of(request).end_session(request, response)
    raise response


async def challenge(request: web.Request) -> web.StreamResponse:
    """A fresh nonce for `bgjobctl dashboard`, which answers it with an HMAC of the token
    in a one-time link (`/login?nonce=N&proof=P`). The token never leaves its file: a
    process that took the dashboard's port while the daemon was down learns nothing from
    the link, made for a nonce the real dashboard never issued."""
    return json_response({"nonce": guard_of(request).logins.new_nonce()})


def _one_time_link(request: web.Request, target: str) -> web.StreamResponse:
    guard = guard_of(request)
    client = client_of(request)
    wait = guard.limiter.retry_after(client)
    if wait is not None:
        return too_many_tries(request, wait)
    nonce = request.query.get("nonce", "")
    if not guard.logins.redeem(nonce):
        return _form(request, target, STALE_LINK, status=401)
    if not guard.proof_ok(nonce, request.query.get("proof", "")):
        guard.limiter.failed(client)
        return _form(request, target, WRONG_GUESS, status=401)
    # A page that moves on by itself rather than a redirect: `bgjobctl dashboard` opens the
    # link from a local file, and a chain of redirects started there would be cross-site,
    # so the browser would not send the new SameSite=Strict cookie to the next page.
    response = render(request, "logged_in.html", {"next": target})
    guard.start_session(response)
    return response


def _form(
    request: web.Request, target: str, error: str | None, *, status: int = 200
) -> web.Response:
    return render(request, "login.html", {"next": target, "error": error}, status=status)
