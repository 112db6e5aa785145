"""bgjobctl: the command line (`bgjobctl`) and the client library of bgjobs.

from bgjobctl import run_background_job            # blocking apps
from bgjobctl import run_background_job_async      # asyncio apps
from bgjobctl import run_background_jobs           # many at once
from bgjobctl import enqueue_in                    # PostgreSQL: in the app's own transaction
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bgjobctl.aclient import AsyncJobHandle, run_background_job_async, run_batch_async
    from bgjobctl.library import JobClient, JobHandle, run_background_job, run_batch
    from bgjobctl.many import BulkIncomplete, run_background_jobs
    from bgjobctl.transactional import enqueue_in, enqueue_in_async
    from bgjobs.errors import DaemonUnreachable, JobCancelled, JobFailed, RefusedError

__all__ = [
    "AsyncJobHandle",
    "BulkIncomplete",
    "DaemonUnreachable",
    "JobCancelled",
    "JobClient",
    "JobFailed",
    "JobHandle",
    "RefusedError",
    "enqueue_in",
    "enqueue_in_async",
    "run_background_job",
    "run_background_job_async",
    "run_background_jobs",
    "run_batch",
    "run_batch_async",
]

_HOMES = {
    "JobFailed": "bgjobs.errors",
    "JobCancelled": "bgjobs.errors",
    "DaemonUnreachable": "bgjobs.errors",
    "RefusedError": "bgjobs.errors",
    "run_background_job": "bgjobctl.library",
    "JobClient": "bgjobctl.library",
    "JobHandle": "bgjobctl.library",
    "run_background_job_async": "bgjobctl.aclient",
    "AsyncJobHandle": "bgjobctl.aclient",
    "run_batch": "bgjobctl.library",
    "run_background_jobs": "bgjobctl.many",
    "BulkIncomplete": "bgjobctl.many",
    "run_batch_async": "bgjobctl.aclient",
    "enqueue_in": "bgjobctl.transactional",
    "enqueue_in_async": "bgjobctl.transactional",
}


def __getattr__(name: str) -> Any:
    # Imported on first use, so `bgjobctl` the command starts without loading the library.
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'bgjobctl' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(home), name)
