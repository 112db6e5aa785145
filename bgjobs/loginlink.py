"""The one-time login link of the dashboard, shared by `bgjobctl dashboard` (which makes it)
and the daemon (which checks it): an HMAC of a nonce the dashboard issued, keyed with the
dashboard's token, so the link proves the token without carrying it."""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import urlencode


def login_proof(token: str, nonce: str) -> str:
    return hmac.new(token.encode(), b"bgjobs-login:" + nonce.encode(), hashlib.sha256).hexdigest()


def login_path(token: str, nonce: str) -> str:
    return "/login?" + urlencode({"nonce": nonce, "proof": login_proof(token, nonce)})
