"""The login form, for a dashboard with `[dashboard] token` (required off loopback)."""

from __future__ import annotations

from aiohttp import web

from bgjobd.dashboard.context import guard_of
from bgjobd.dashboard.render import DEFAULT_PAGE, render, safe_next


async def form(request: web.Request) -> web.StreamResponse:
    guard = guard_of(request)
    if not guard.login_required:
        raise web.HTTPSeeOther(DEFAULT_PAGE)
    target = safe_next(request.query.get("next"))
    if guard.authenticated_by(request):
        raise web.HTTPSeeOther(target)
    return render(request, "login.html", {"next": target, "error": None})


async def submit(request: web.Request) -> web.StreamResponse:
    guard = guard_of(request)
    data = await request.post()
    target = safe_next(data.get("next"))
    token = data.get("token")
    if not guard.login_required:
        raise web.HTTPSeeOther(DEFAULT_PAGE)
    if not isinstance(token, str) or not guard.token_ok(token):
        return render(
            request,
            "login.html",
            {"next": target, "error": "That is not the dashboard's token."},
            status=401,
        )
    response = web.HTTPSeeOther(target)
    response.set_cookie(
        guard.auth_cookie, guard.login_cookie(), httponly=True, samesite="Strict", path="/"
    )
    raise response


async def logout(request: web.Request) -> web.StreamResponse:
    response = web.HTTPSeeOther("/login")
    response.del_cookie(guard_of(request).auth_cookie, path="/")
    raise response
