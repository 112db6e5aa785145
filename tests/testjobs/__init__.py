"""Job classes for the tests: each does one observable thing."""

from testjobs.jobs import (
    Add,
    AsyncEcho,
    Chatty,
    Crash,
    Echo,
    Fail,
    Flaky,
    Printer,
    Raise,
    Record,
    SelfDecides,
    Sleep,
    SpawnGrandchild,
    Unencodable,
)

__all__ = [
    "Add",
    "AsyncEcho",
    "Chatty",
    "Crash",
    "Echo",
    "Fail",
    "Flaky",
    "Printer",
    "Raise",
    "Record",
    "SelfDecides",
    "Sleep",
    "SpawnGrandchild",
    "Unencodable",
]
from testjobs.store import BigResult  # noqa: F401
