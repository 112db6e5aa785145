"""Turning the daemon's replies into values, and its typed errors into exceptions."""

from __future__ import annotations

from typing import TypeVar

from bgjobs.errors import (
    BadParams,
    DaemonUnreachable,
    InvalidState,
    NotFound,
    ProtocolError,
    RefusedError,
    RequestFailed,
    StoreFull,
    StoreUnavailable,
    TooLarge,
)
from bgjobs.protocol import Error, ErrorCode, Reply

_R = TypeVar("_R")

_PROTOCOL_CODES = frozenset(
    {
        ErrorCode.BAD_REQUEST,
        ErrorCode.FRAME_TOO_LARGE,
        ErrorCode.VERSION_MISMATCH,
        ErrorCode.UNAUTHORIZED,
    }
)


def raise_error(error: Error) -> None:
    code, message = error.code, error.message
    if code is ErrorCode.REFUSED:
        raise RefusedError(message)
    if code is ErrorCode.NOT_FOUND:
        raise NotFound(code, message)
    if code is ErrorCode.INVALID_STATE:
        raise InvalidState(code, message)
    if code is ErrorCode.BAD_PARAMS:
        raise BadParams(code, message)
    if code is ErrorCode.TOO_LARGE:
        raise TooLarge(code, message)
    if code is ErrorCode.STORE_FULL:
        raise StoreFull(code, message)
    if code is ErrorCode.STORE_UNAVAILABLE:
        raise StoreUnavailable(code, message)
    if code is ErrorCode.SHUTTING_DOWN:
        raise DaemonUnreachable(f"the daemon is shutting down: {message}")
    if code in _PROTOCOL_CODES:
        raise ProtocolError(f"{code.value}: {message}")
    raise RequestFailed(code, message)


def expect(reply: Reply, kind: type[_R]) -> _R:
    if isinstance(reply, Error):
        raise_error(reply)
    if not isinstance(reply, kind):
        raise ProtocolError(f"expected {kind.__name__}, got {type(reply).__name__}")
    return reply
