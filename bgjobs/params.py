"""Job parameters from the command line: the original's `"p1,p2"` grammar, or JSON."""

from __future__ import annotations

from typing import Any

import msgspec

from bgjobs.errors import UsageError


def split_params(text: str | None) -> list[Any]:
    """The original's grammar: split on commas into strings; empty means no parameters."""
    if not text:
        return []
    return list(text.split(","))


def parse_json_params(text: str) -> list[Any]:
    try:
        value = msgspec.json.decode(text)
    except msgspec.DecodeError as exc:
        raise UsageError(f"--json-params is not valid JSON: {exc}") from None
    if not isinstance(value, list):
        raise UsageError("--json-params must be a JSON array, e.g. '[1, \"a\"]'")
    return value


def parse_delay(text: str | None) -> float:
    """A delay in seconds: a non-negative number; anything else is a usage error."""
    if text is None or text == "":
        return 0.0
    try:
        delay = float(text)
    except ValueError:
        raise UsageError(f"delay must be a number of seconds, not {text!r}") from None
    if not delay >= 0 or delay == float("inf"):
        raise UsageError(f"delay must be a finite number of seconds >= 0, not {text!r}")
    return delay


def check_encodable(params: list[Any]) -> None:
    try:
        msgspec.msgpack.encode(params)
    except (TypeError, OverflowError, ValueError, RecursionError) as exc:
        raise UsageError(f"parameters cannot be encoded: {exc}") from None
