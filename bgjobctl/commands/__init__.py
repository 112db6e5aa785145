"""One module per command, each matching a daemon request handler of the same name."""

from __future__ import annotations

from types import ModuleType

from bgjobctl.commands import (
    cancel,
    dashboard,
    logs,
    nodes,
    pause,
    ping,
    prune,
    resume,
    retry,
    schedules,
    show,
    stats,
    store,
    submit,
    submit_batch,
    watch,
)
from bgjobctl.commands import list as list_jobs

COMMANDS: dict[str, ModuleType] = {
    "submit": submit,
    "submit-batch": submit_batch,
    "list": list_jobs,
    "show": show,
    "cancel": cancel,
    "retry": retry,
    "logs": logs,
    "stats": stats,
    "ping": ping,
    "dashboard": dashboard,
    "watch": watch,
    "schedules": schedules,
    "prune": prune,
    "nodes": nodes,
    "pause": pause,
    "resume": resume,
    "store": store,
}
