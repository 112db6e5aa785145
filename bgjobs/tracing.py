"""The W3C trace context (OpenTelemetry) that travels from the code submitting a job to each
of its attempts: taken here by the client, stored with the job, and made the parent of the
attempt's span by the worker (`bgjobd.worker.tracing`).

OpenTelemetry is optional (`pip install bgjobs[otel]`) and never imported here unless the
application has imported it already: without `opentelemetry.trace` loaded no span can be
current, so a process that does not trace pays one dictionary look-up per submit.
"""

from __future__ import annotations

import sys
from typing import Final

from bgjobs.model import MAX_TRACE_VALUE

TRACE_KEYS: Final = ("traceparent", "tracestate")


def current_trace() -> dict[str, str] | None:
    """The trace context of the span current in this thread or task, or None if there is
    none (or OpenTelemetry is not in use)."""
    if "opentelemetry.trace" not in sys.modules:
        return None
    # Only the W3C trace context, whatever propagators the application set globally:
    # baggage could be large or private, and the worker reads this format back.
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier)
    return bounded(carrier)


def bounded(carrier: dict[str, str]) -> dict[str, str] | None:
    """The trace context kept with a job: `traceparent` and, when it fits, `tracestate`
    (W3C lets a hop drop it); None without a `traceparent` that fits."""
    kept = {
        key: value
        for key in TRACE_KEYS
        if isinstance(value := carrier.get(key), str) and 0 < len(value) <= MAX_TRACE_VALUE
    }
    return kept if "traceparent" in kept else None
