"""Summaries of job records for listings: params and result cut to a short preview, errors
without their tracebacks, so that a page of any jobs always fits in one reply.

A preview keeps the shape of the value (a list stays a list, a dict a dict) but holds at
most `_LEAVES` items at any depth (a dict's key and value count as one), strings of at most
`_TEXT` characters, and nothing deeper than `_DEPTH`; whatever was cut sets
`JobInfo.truncated`. With these bounds one summary stays under about 2 KiB, and the largest
page a listing returns (1000 jobs) well under a frame.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

from bgjobs.model import ErrorInfo, JobInfo

_TEXT: Final = 60
"""Characters (or bytes) of a string kept in a preview."""
_LEAVES: Final = 12
"""Items kept in one preview, in reading order, at any depth."""
_DEPTH: Final = 4
_LINE: Final = 200
"""Characters kept of an error's message, a reason, an owner."""
_HIERARCHY: Final = 4
"""Class names kept of an error's hierarchy (each given twice: short and dotted)."""
ELLIPSIS: Final = "…"


class _Budget:
    def __init__(self) -> None:
        self.leaves = _LEAVES
        self.cut = False

    def take(self) -> bool:
        """One more leaf, if any are left (else the preview is marked cut)."""
        if self.leaves <= 0:
            self.cut = True
            return False
        self.leaves -= 1
        return True


def _text(value: str, budget: _Budget) -> str:
    if len(value) <= _TEXT:
        return value
    budget.cut = True
    return value[:_TEXT] + ELLIPSIS


def _data(value: bytes | bytearray | memoryview, budget: _Budget) -> bytes:
    data = bytes(value[: _TEXT + 1])
    if len(data) <= _TEXT:
        return data
    budget.cut = True
    return data[:_TEXT]


def _mapping(value: dict[Any, Any], budget: _Budget, depth: int) -> dict[Any, Any]:
    kept: dict[Any, Any] = {}
    for key, item in value.items():
        if not budget.take():
            break
        # A key that is not text or a number (a tuple) becomes text: still hashable.
        name = key if isinstance(key, int | float) else _text(str(key), budget)
        kept[name] = _shrink(item, budget, depth + 1)
    return kept


def _sequence(value: Any, budget: _Budget, depth: int) -> list[Any]:
    items: list[Any] = []
    for item in value:
        if not budget.take():
            break
        items.append(_shrink(item, budget, depth + 1))
    return items


def _container(value: Any, budget: _Budget, depth: int) -> Any:
    if depth >= _DEPTH:
        budget.cut = budget.cut or bool(value)
        return {} if isinstance(value, dict) else []
    if isinstance(value, dict):
        return _mapping(value, budget, depth)
    return _sequence(value, budget, depth)


def _shrink(value: Any, budget: _Budget, depth: int) -> Any:
    if isinstance(value, str):
        return _text(value, budget)
    if isinstance(value, bytes | bytearray | memoryview):
        return _data(value, budget)
    if isinstance(value, dict | list | tuple | set | frozenset):
        return _container(value, budget, depth)
    if isinstance(value, msgspec.Raw | msgspec.msgpack.Ext):
        budget.cut = True
        return type(value).__name__
    return value  # a number, a bool, None, a datetime: small and kept as is


def preview(value: Any) -> tuple[Any, bool]:
    """`value` cut to a preview, and whether anything was cut."""
    budget = _Budget()
    shrunk = _shrink(value, budget, 0)
    return shrunk, budget.cut


def _line(value: str | None) -> tuple[str | None, bool]:
    if value is None or len(value) <= _LINE:
        return value, False
    return value[:_LINE] + ELLIPSIS, True


def _error(error: ErrorInfo | None) -> tuple[ErrorInfo | None, bool]:
    if error is None:
        return None, False
    message, cut = _line(error.message)
    hierarchy = error.hierarchy[: 2 * _HIERARCHY]
    summary = ErrorInfo(
        type=_line(error.type)[0] or "",
        message=message or "",
        hierarchy=[_line(name)[0] or "" for name in hierarchy],
    )
    # A listing never carries tracebacks: that alone does not flag the summary.
    return summary, cut or len(hierarchy) < len(error.hierarchy)


def summarize(job: JobInfo) -> JobInfo:
    """The job as a listing shows it (the record itself is left unchanged)."""
    params, params_cut = preview(job.params)
    result, result_cut = preview(job.result)
    error, error_cut = _error(job.error)
    reason, reason_cut = _line(job.reason)
    owner, owner_cut = _line(job.owner)
    return msgspec.structs.replace(
        job,
        params=params,
        result=result,
        error=error,
        reason=reason,
        owner=owner or "",
        history=[],
        truncated=params_cut or result_cut or error_cut or reason_cut or owner_cut,
    )
