"""Who may use the dashboard and how a browser is kept from being used against it.

- A login always, on loopback too (other users of the host reach 127.0.0.1 as well): the
  token is `[dashboard] token`, or a random one kept in a 0600 file (`dashboard.token` in
  the storage directory), made on the first start. A browser logs in with the token or a
  one-time link from `bgjobctl dashboard` and gets a random session id, kept in the daemon's
  memory (ended by logging out or by a restart); a script sends `Authorization: Bearer`.
- Token guesses are slowed down per client address (see `ratelimit`).
- A strict Host check (see `hosts`), so a web page cannot reach the dashboard through a DNS
  name rebound to 127.0.0.1.
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
import math
import secrets
from typing import Final
from urllib.parse import urlencode, urlsplit

from aiohttp import web
from aiohttp.typedefs import Handler

from bgjobd.dashboard.hosts import HostCheck
from bgjobd.dashboard.ratelimit import LoginLimiter
from bgjobd.dashboard.sessions import Logins
from bgjobs.errors import ConfigError
from bgjobs.loginlink import login_proof

MIN_TOKEN_LENGTH: Final = 16
CSRF_HEADER: Final = "X-CSRF-Token"
CSRF_FIELD: Final = "csrf_token"
SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
PUBLIC_PATHS: Final = ("/static/", "/login", "/favicon.ico")
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


def check_exposure(host: str, token: str, *, chosen: bool, public_metrics: bool) -> None:
    """Refuse a configuration that would expose the dashboard carelessly: off loopback only
    with a token chosen on purpose (`token` or `token_file`), and a long enough one."""
    if len(token) < MIN_TOKEN_LENGTH:
        raise ConfigError(
            f"dashboard.token: must be at least {MIN_TOKEN_LENGTH} characters "
            "(e.g. the output of `python -c 'import secrets; print(secrets.token_urlsafe())'`)"
        )
    if not is_loopback(host) and not chosen:
        raise ConfigError(
            f"dashboard.listen: {host!r} is not a loopback address; set dashboard.token "
            "(or dashboard.token_file) to expose the dashboard there, or listen on 127.0.0.1"
        )
    if public_metrics and not is_loopback(host):
        raise ConfigError(
            "dashboard.public_metrics: only on a loopback listen address "
            f"({host!r} is not); off loopback, scrape /metrics with the token"
        )


class Guard:
    def __init__(self, *, token: str, listen_host: str, port: int, public_metrics: bool) -> None:
        self.token = token
        self.public_metrics = public_metrics
        self.hosts = HostCheck(listen_host, port)
        self.logins = Logins()
        self.limiter = LoginLimiter()
        # CSRF tokens are only good until the daemon restarts.
        self._key = secrets.token_bytes(32)
        # Cookies do not tell ports apart: two daemons on one host keep theirs separate.
        self.session_cookie = f"bgjobs_session_{port}"
        self.auth_cookie = f"bgjobs_auth_{port}"

    def csrf_token(self, session: str) -> str:
        return hmac.new(self._key, b"csrf:" + session.encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, session: str | None, provided: str | None) -> bool:
        if not session or not provided:
            return False
        return hmac.compare_digest(self.csrf_token(session), provided)

    def token_ok(self, provided: str) -> bool:
        return hmac.compare_digest(provided.encode(), self.token.encode())

    def proof_ok(self, nonce: str, proof: str) -> bool:
        """Whether `proof` is the one-time link's HMAC of `nonce` under the token."""
        return hmac.compare_digest(login_proof(self.token, nonce).encode(), proof.encode())

    def logged_in(self, request: web.Request) -> bool:
        return self.logins.sessions.valid(request.cookies.get(self.auth_cookie))

    def start_session(self, response: web.StreamResponse) -> None:
        response.set_cookie(
            self.auth_cookie, self.logins.sessions.new(), httponly=True, samesite="Strict", path="/"
        )

    def end_session(self, request: web.Request, response: web.StreamResponse) -> None:
        self.logins.sessions.end(request.cookies.get(self.auth_cookie))
        response.del_cookie(self.auth_cookie, path="/")

    def host_ok(self, request: web.Request) -> bool:
        host = request.headers.get("Host")
        if host is None or not self.hosts.allows(host):
            return False
        target = request.raw_path
        if target.startswith("/") or target == "*":
            return True
        # Absolute form (`GET http://host/ HTTP/1.1`): it must name this dashboard too.
        parts = urlsplit(target)
        return parts.scheme in ("http", "https") and self.hosts.allows(parts.netloc)


def client_of(request: web.Request) -> str:
    return request.remote or "?"


def too_many_tries(request: web.Request, wait: float) -> web.Response:
    response = refuse(request, 429, "too many wrong tokens from this address: try again later")
    response.headers["Retry-After"] = str(math.ceil(wait))
    return response


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
        return refuse(request, 403, "unexpected Host: use the dashboard's own address")
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
    if request.path.startswith(PUBLIC_PATHS) or (
        guard.public_metrics and request.path == "/metrics"
    ):
        return await handler(request)
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    if scheme:
        client = client_of(request)
        wait = guard.limiter.retry_after(client)
        if wait is not None:
            return too_many_tries(request, wait)
        if scheme.lower() == "bearer" and guard.token_ok(credentials.strip()):
            request[VIA_BEARER] = True
            return await handler(request)
        guard.limiter.failed(client)
    elif guard.logged_in(request):
        return await handler(request)
    if request.method == "GET" and wants_html(request):
        raise web.HTTPSeeOther("/login?" + urlencode({"next": request.path_qs}))
    if request.method not in SAFE_METHODS:
        return refuse(request, 403, "log in first: changing anything needs a login")
    response = refuse(request, 401, "authentication required")
    response.headers["WWW-Authenticate"] = 'Bearer realm="bgjobs"'
    return response


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
