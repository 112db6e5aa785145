"""The allow-list check that every path runs before anything is imported or started."""

from __future__ import annotations

import re

from bgjobs.config import Config
from bgjobs.errors import RefusedError

_IDENTIFIER = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")


def refusal(config: Config, class_name: str, method: str) -> str | None:
    """Why (class_name, method) must not run, or None when it is allow-listed."""
    if not _IDENTIFIER.match(class_name):
        return f"class name {class_name!r} is not a plain identifier"
    if method.startswith("_"):
        return f"method {method!r} is private"
    if not _IDENTIFIER.match(method):
        return f"method name {method!r} is not a plain identifier"
    if class_name not in config.settings.allowed_jobs:
        return f"class {class_name!r} is not in allowed_jobs"
    if not config.is_allowed(class_name, method):
        return f"method {method!r} of {class_name} is not in allowed_jobs"
    return None


def ensure_allowed(config: Config, class_name: str, method: str) -> None:
    reason = refusal(config, class_name, method)
    if reason:
        raise RefusedError(f"refused {class_name}::{method}: {reason}")
