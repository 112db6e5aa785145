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
from testjobs.batches import BatchCallback, Square  # noqa: F401
from testjobs.client import Token  # noqa: F401
from testjobs.cluster import Group, Interval  # noqa: F401
from testjobs.containment import Allocate, Descriptors, Escape, ManyFiles, OpenFiles  # noqa: F401
from testjobs.crashloop import Tally as Tally
from testjobs.fallback import Then  # noqa: F401
from testjobs.progress import Reporting, Talker  # noqa: F401
from testjobs.sizes import BigResult, Flood, Stubborn  # noqa: F401
from testjobs.store import SlowBigResult  # noqa: F401
from testjobs.template import Imported  # noqa: F401
from testjobs.text import Controls, RetryIn, Surrogates  # noqa: F401
from testjobs.tracing import AsyncTraced, LoadedModules, Traced, TracingLoaded  # noqa: F401
