"""Tracing: a `[tracing] setup` hook that exports the worker's spans to a file the test
reads (the worker is another process), and jobs that look at the tracing around them.

OpenTelemetry is imported inside the functions: every worker imports this package, and
one whose tracing is off must not load it."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan

SPANS_FILE = "spans.jsonl"
"""In the storage directory (`BGJOBS_STORAGE`, which workers are given)."""


def export_to_file() -> None:
    """The `[tracing] setup` of the tests: every finished span, at once, as one JSON line."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

    path = Path(os.environ["BGJOBS_STORAGE"]) / SPANS_FILE

    class FileExporter(SpanExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            with path.open("a") as out:
                for span in spans:
                    out.write(json.dumps(describe(span)) + "\n")
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(FileExporter()))
    trace.set_tracer_provider(provider)


def describe(span: ReadableSpan) -> dict[str, Any]:
    context = span.get_span_context()
    assert context is not None
    return {
        "name": span.name,
        "kind": span.kind.name,
        "trace_id": f"{context.trace_id:032x}",
        "span_id": f"{context.span_id:016x}",
        "parent_span_id": None if span.parent is None else f"{span.parent.span_id:016x}",
        "remote_parent": span.parent is not None and span.parent.is_remote,
        "attributes": dict(span.attributes or {}),
        "status": span.status.status_code.name,
        "status_description": span.status.description,
        "events": [event.name for event in span.events],
    }


class Traced:
    """Does its work in a span of its own, under whatever span is current."""

    def handle(self, *args: Any) -> list[Any]:
        from opentelemetry import trace

        with trace.get_tracer("testjobs").start_as_current_span("inner work"):
            return list(args)


class AsyncTraced:
    """`Traced`, as a coroutine: the worker runs it in an event loop of its own."""

    async def handle(self, *args: Any) -> list[Any]:
        from opentelemetry import trace

        await asyncio.sleep(0)
        with trace.get_tracer("testjobs").start_as_current_span("inner async work"):
            return list(args)


class TracingLoaded:
    """Whether this worker has loaded OpenTelemetry at all."""

    def handle(self) -> bool:
        return "opentelemetry.trace" in sys.modules


class LoadedModules:
    """How many modules this worker has loaded, and how many of them are OpenTelemetry's
    (for `bench/otel_startup.py`)."""

    def handle(self) -> list[int]:
        return [len(sys.modules), sum(name.startswith("opentelemetry") for name in sys.modules)]
