"""Who may use the dashboard and how a browser is kept from being used against it.

- Loopback by default. Without a token, requests must name a loopback host in `Host`, so a
  web page cannot reach the dashboard through a DNS name rebound to 127.0.0.1.
- With `[dashboard] token`, every request but the login form and static files needs it:
  the login form sets a cookie (an HMAC of the token, so the cookie never holds the token
  and changing the token logs everyone out), or an `Authorization: Bearer` header.
- Every state-changing request is a POST carrying a CSRF token bound to the browser's
  session cookie. Bearer requests are exempt: browsers never add that header on their own,
  so a forged cross-site request cannot carry it.
- Strict headers on every response: a CSP allowing only the daemon's own scripts and styles
  (no inline code), no framing, no sniffing, no referrer.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from typing import Final
from urllib.parse import urlencode

from aiohttp import web
from aiohttp.typedefs import Handler

from bgjobs.errors import ConfigError

MIN_TOKEN_LENGTH: Final = 16
CSRF_HEADER: Final = "X-CSRF-Token"
CSRF_FIELD: Final = "csrf_token"
SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
PUBLIC_PATHS: Final = ("/static/", "/login", "/favicon.ico")
LOOPBACK_NAMES: Final = frozenset({"localhost", "127.0.0.1", "::1"})
CONTENT_SECURITY_POLICY: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
_HEADERS: Final = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, token: str | None) -> None:
    """Refuse a configuration that would expose the dashboard without a login."""
    if token is not None and len(token) < MIN_TOKEN_LENGTH:
        raise ConfigError(
            f"dashboard.token: must be at least {MIN_TOKEN_LENGTH} characters "
            "(e.g. the output of `python -c 'import secrets; print(secrets.token_urlsafe())'`)"
        )
    if token is None and not is_loopback(host):
        raise ConfigError(
            f"dashboard.listen: {host!r} is not a loopback address; set dashboard.token "
            "to require a login there, or listen on 127.0.0.1"
        )


def host_name(host_header: str) -> str:
    """The name in a `Host` header, without port or IPv6 brackets."""
    if host_header.startswith("["):
        return host_header[1:].partition("]")[0].lower()
    return host_header.rpartition(":")[0].lower() if ":" in host_header else host_header.lower()


class Guard:
    def __init__(self, *, token: str | None, listen_host: str, port: int) -> None:
        self.token = token
        self._allowed_hosts = LOOPBACK_NAMES | {listen_host.lower()}
        # Sessions and CSRF tokens are only good until the daemon restarts.
        self._key = secrets.token_bytes(32)
        # Cookies do not tell ports apart: two daemons on one host keep theirs separate.
        self.session_cookie = f"bgjobs_session_{port}"
        self.auth_cookie = f"bgjobs_auth_{port}"

    @property
    def login_required(self) -> bool:
        return self.token is not None

    def csrf_token(self, session: str) -> str:
        return hmac.new(self._key, b"csrf:" + session.encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, session: str | None, provided: str | None) -> bool:
        if not session or not provided:
            return False
        return hmac.compare_digest(self.csrf_token(session), provided)

    def login_cookie(self) -> str:
        assert self.token is not None
        return hmac.new(self.token.encode(), b"bgjobs-dashboard-login", hashlib.sha256).hexdigest()

    def token_ok(self, provided: str) -> bool:
        return self.token is not None and hmac.compare_digest(
            provided.encode(), self.token.encode()
        )

    def authenticated_by(self, request: web.Request) -> str | None:
        """ "bearer", "cookie" or None."""
        scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and self.token_ok(credentials.strip()):
            return "bearer"
        cookie = request.cookies.get(self.auth_cookie)
        if cookie and hmac.compare_digest(cookie, self.login_cookie()):
            return "cookie"
        return None

    def host_ok(self, request: web.Request) -> bool:
        return self.login_required or host_name(request.host) in self._allowed_hosts


GUARD: Final = web.AppKey("guard", Guard)
SESSION: Final = web.RequestKey("session", str)
VIA_BEARER: Final = web.RequestKey("via_bearer", bool)


def wants_html(request: web.Request) -> bool:
    return "text/html" in request.headers.get("Accept", "")


def refuse(request: web.Request, status: int, message: str) -> web.Response:
    if wants_html(request):
        return web.Response(status=status, text=message, content_type="text/plain")
    return web.json_response({"error": {"status": status, "message": message}}, status=status)


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        exc.headers.update(_HEADERS)
        raise
    response.headers.update(_HEADERS)
    return response


@web.middleware
async def host_check(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not request.app[GUARD].host_ok(request):
        return refuse(request, 403, "unexpected Host header: use http://127.0.0.1:PORT/")
    return await handler(request)


@web.middleware
async def session(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Give every browser a random session id, the anchor of its CSRF token."""
    guard = request.app[GUARD]
    current = request.cookies.get(guard.session_cookie, "")
    fresh = len(current) != 43  # token_urlsafe(32); anything else was not made by us
    request[SESSION] = secrets.token_urlsafe(32) if fresh else current
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        if fresh:
            _set_session(exc, guard, request[SESSION])
        raise
    if fresh and not response.prepared:
        _set_session(response, guard, request[SESSION])
    return response


def _set_session(response: web.StreamResponse, guard: Guard, value: str) -> None:
    response.set_cookie(guard.session_cookie, value, httponly=True, samesite="Strict", path="/")


@web.middleware
async def login(request: web.Request, handler: Handler) -> web.StreamResponse:
    guard = request.app[GUARD]
    request[VIA_BEARER] = False
    if not guard.login_required or request.path.startswith(PUBLIC_PATHS):
        return await handler(request)
    via = guard.authenticated_by(request)
    if via is None:
        if request.method == "GET" and wants_html(request):
            raise web.HTTPSeeOther("/login?" + urlencode({"next": request.path_qs}))
        response = refuse(request, 401, "authentication required")
        response.headers["WWW-Authenticate"] = 'Bearer realm="bgjobs"'
        return response
    request[VIA_BEARER] = via == "bearer"
    return await handler(request)


@web.middleware
async def csrf(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.method in SAFE_METHODS or request[VIA_BEARER]:
        return await handler(request)
    provided = request.headers.get(CSRF_HEADER)
    if provided is None and request.content_type in (
        "application/x-www-form-urlencoded",
        "multipart/form-data",
    ):
        field = (await request.post()).get(CSRF_FIELD)
        provided = field if isinstance(field, str) else None
    if not request.app[GUARD].csrf_ok(request[SESSION], provided):
        return refuse(request, 403, "missing or wrong CSRF token: reload the page and try again")
    return await handler(request)


MIDDLEWARES: Final = (security_headers, host_check, session, login, csrf)
"""Outermost first."""
