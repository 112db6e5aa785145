"""Running one attempt inside the worker: resolve the allow-listed method, call it, and
describe the outcome as data."""

from __future__ import annotations

import importlib
import sys
import time
import traceback
from types import CoroutineType, ModuleType
from typing import Any, Final

import msgspec

from bgjobd.worker.messages import AttemptDone, RunAttempt, Setup
from bgjobs.model import ErrorInfo
from bgjobs.protocol import MAX_FRAME_BYTES
from bgjobs.signals import Fail, Retry
from bgjobs.sizes import format_size
from bgjobs.text import without_surrogates

RESULT_TOO_LARGE: Final = "ResultTooLarge"
"""The error type of an attempt whose result is over `max_result_bytes` (rules can name it)."""
_ENVELOPE_BYTES: Final = 256 * 1024
"""Room in a frame for the report around a result: `bgjobs.config.ENVELOPE_BYTES`, which
the worker does not import (it never needs the configuration's modules)."""
_TRACEBACK_LIMIT: Final = 64 * 1024
_MESSAGE_LIMIT: Final = 8 * 1024


class NotRunnable(Exception):
    """The requested method is not allow-listed or does not exist."""


def tolerant_streams() -> None:
    """Let the job print anything: a character the stream cannot encode (a lone surrogate,
    say) is written as a backslash escape instead of failing the job's `print`."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")


def describe_error(exc: BaseException) -> ErrorInfo:
    """The error as data. Every text in it is made encodable (lone surrogates escaped) and
    `str(exc)` may itself raise: the description must never fail, or the worker would die
    and the job's real error be lost."""
    hierarchy = [
        without_surrogates(_dotted(cls))
        for cls in type(exc).__mro__
        if issubclass(cls, BaseException)
    ]
    # The first frame is our own call into the job: leave it out of the job's traceback.
    origin = exc.__traceback__
    if origin is not None and origin.tb_frame.f_code is run.__code__:
        origin = origin.tb_next
    try:
        text = "".join(traceback.format_exception(type(exc), exc, origin))
    except Exception as failure:  # noqa: BLE001  # a job's __str__ may raise anything
        text = f"(the traceback could not be formatted: {type(failure).__name__})"
    return ErrorInfo(
        type=without_surrogates(type(exc).__name__),
        message=without_surrogates(_message(exc)[:_MESSAGE_LIMIT]),
        traceback=without_surrogates(text[-_TRACEBACK_LIMIT:]),
        hierarchy=hierarchy,
    )


def _message(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception as failure:  # noqa: BLE001  # a job's __str__ may raise anything
        return f"(str() of the error raised {type(failure).__name__})"


def _dotted(cls: type) -> str:
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


def import_jobs(setup: Setup) -> ModuleType:
    return importlib.import_module(setup.jobs_package)


def resolve(setup: Setup, package: ModuleType, class_name: str, method: str) -> Any:
    """The bound method to call. The daemon checked the allow-list; this checks it again so
    that nothing it did not name is ever instantiated."""
    if method.startswith("_") or method not in setup.allowed_jobs.get(class_name, ()):
        raise NotRunnable(f"{class_name}::{method} is not allow-listed")
    cls = getattr(package, class_name, None)
    if not isinstance(cls, type):
        raise NotRunnable(f"{setup.jobs_package}.{class_name} is not a class")
    bound = getattr(cls(), method, None)
    if not callable(bound):
        raise NotRunnable(f"{setup.jobs_package}.{class_name}.{method} is not callable")
    return bound


def run(setup: Setup, package: ModuleType, request: RunAttempt) -> AttemptDone:
    started = time.perf_counter()
    try:
        value = resolve(setup, package, request.class_name, request.method)(*request.params)
        if isinstance(value, CoroutineType):
            import asyncio  # only for async jobs: it would double a worker's memory

            value = asyncio.run(value)
    except Exception as exc:  # noqa: BLE001  # whatever the job raises is its failure
        return _failed(request, exc, time.perf_counter() - started)
    return _succeeded(request, value, time.perf_counter() - started)


def _succeeded(request: RunAttempt, value: Any, duration: float) -> AttemptDone:
    note = None
    try:
        size = len(msgspec.msgpack.encode(value))
    except (TypeError, OverflowError, ValueError) as exc:
        note = f"result of type {type(value).__name__} is not encodable ({exc}); stored its repr"
        value = repr(value)
        size = len(msgspec.msgpack.encode(value))
    limit = result_limit(request)
    if size > limit:
        return AttemptDone(
            job_id=request.job_id,
            attempt=request.attempt,
            duration=duration,
            error=ErrorInfo(
                type=RESULT_TOO_LARGE,
                message=(
                    f"the result is {format_size(size)} ({size} bytes), over "
                    f"max_result_bytes ({format_size(limit)})"
                ),
                hierarchy=[RESULT_TOO_LARGE],
            ),
        )
    return AttemptDone(
        job_id=request.job_id, attempt=request.attempt, duration=duration, result=value, note=note
    )


def result_limit(request: RunAttempt) -> int:
    """The largest result this attempt may return: its class's `max_result_bytes`, and in
    any case small enough for the report to fit in one frame to the daemon."""
    ceiling = MAX_FRAME_BYTES - _ENVELOPE_BYTES
    return min(request.max_result_bytes or ceiling, ceiling)


def _failed(request: RunAttempt, exc: Exception, duration: float) -> AttemptDone:
    directive: Any = None
    delay = None
    if isinstance(exc, Retry):
        directive, delay = "retry", exc.delay
    elif isinstance(exc, Fail):
        directive = "fail"
    return AttemptDone(
        job_id=request.job_id,
        attempt=request.attempt,
        duration=duration,
        error=describe_error(exc),
        directive=directive,
        retry_delay=delay,
    )
