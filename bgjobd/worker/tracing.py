"""Each attempt as an OpenTelemetry span, made in the worker around the job's call so that
the job's own spans nest under it, with the submitter's span as its parent.

Imported only by a worker whose configuration says `[tracing] enabled = true`: other
workers never load OpenTelemetry. How spans leave the worker is the application's choice:
`[tracing] setup = "package.module:function"` is called once to install its tracer
provider; without it the worker exports with OTLP, configured by the standard `OTEL_*`
environment variables (the exporter package must be installed).

Tracing never stops a job: if it cannot be set up, attempts run untraced and each says why
in the job log (a warning note on the attempt).

The testing mode (`bgjobd.inline`) makes the same spans in the test's own process, with
whatever tracer provider the test installed (`InlineSpan`).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from typing import Final

import msgspec
from opentelemetry import context, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from bgjobd.worker.messages import AttemptDone, RunAttempt, Setup
from bgjobs.model import AttemptInfo, ErrorInfo, JobInfo

SUCCEEDED: Final = "succeeded"
FAILED: Final = "failed"
STOPPED: Final = "stopped"
"""The attempt was ended by SIGTERM (its deadline, a cancel, or the daemon stopping: the
job's record says which)."""
_OTLP_EXPORTERS: Final = {
    "grpc": ("opentelemetry.exporter.otlp.proto.grpc.trace_exporter", "grpc"),
    "http/protobuf": ("opentelemetry.exporter.otlp.proto.http.trace_exporter", "http"),
}
_SPAN_STATUS_LIMIT: Final = 1024


class SetupFailed(Exception):
    """Tracing could not be set up in this worker."""


_tracer: Tracer | None = None
_problem: str | None = None
"""Why this worker runs its attempts untraced, if it could not set tracing up."""


def start(setup: Setup) -> None:
    """Set tracing up once, as the worker starts (before it imports the jobs package, so
    that spans made while importing go the same way)."""
    global _tracer, _problem  # noqa: PLW0603  # one tracer provider per process, as OpenTelemetry has
    try:
        if setup.tracing_setup is not None:
            _call_setup(setup.tracing_setup)
        else:
            _export_with_otlp()
    except Exception as exc:  # noqa: BLE001  # whatever the setup raised, jobs still run
        _problem = f"tracing is off in worker {os.getpid()}: {type(exc).__name__}: {exc}"
        return
    _tracer = trace.get_tracer("bgjobs")


def _call_setup(target: str) -> None:
    module_name, _, function_name = target.partition(":")
    try:
        function = getattr(importlib.import_module(module_name), function_name)
    except (ImportError, AttributeError) as exc:
        raise SetupFailed(f"[tracing] setup {target!r} cannot be found ({exc})") from exc
    function()


def _export_with_otlp() -> None:
    """A tracer provider exporting in batches with OTLP, as `OTEL_*` variables configure
    it (endpoint, headers, protocol, service name, resource attributes, sampler)."""
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

    if os.environ.get("OTEL_TRACES_EXPORTER", "otlp").strip() == "none":
        return
    protocol = os.environ.get(
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
    ).strip()
    if protocol not in _OTLP_EXPORTERS:
        raise SetupFailed(f"OTLP protocol {protocol!r} is not one of {sorted(_OTLP_EXPORTERS)}")
    module_name, extra = _OTLP_EXPORTERS[protocol]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise SetupFailed(
            f"the OTLP exporter is not installed (pip install "
            f"opentelemetry-exporter-otlp-proto-{extra}), or name a [tracing] setup"
        ) from exc
    exporter: SpanExporter = module.OTLPSpanExporter()
    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: "bgjobs"}))
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)


def run_in_span(request: RunAttempt, call: Callable[[], AttemptDone]) -> AttemptDone:
    """`call()` (the attempt) inside its span; a note in the log if tracing is off."""
    if _tracer is None:
        done = call()
        if _problem is not None and done.note is None:
            done = msgspec.structs.replace(done, note=_problem)
        return done
    with _tracer.start_as_current_span(
        _name(request.class_name, request.method),
        context=_parent(request.trace),
        kind=SpanKind.CONSUMER,
        attributes=_attributes(request.job_id, request.class_name, request.method, request.attempt),
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        try:
            done = call()
        except BaseException:
            # SIGTERM, raised inside the job: the worker exits, flushing its spans first.
            span.set_attribute("bgjobs.outcome", STOPPED)
            span.set_status(Status(StatusCode.ERROR, "the attempt was stopped"))
            raise
        _record(span, done.error)
        return done


class InlineSpan:
    """An attempt's span in the testing mode, current from its creation to `end` (the attempt
    may await in between, in the same task)."""

    def __init__(self, job: JobInfo, number: int) -> None:
        self._span = trace.get_tracer("bgjobs").start_span(
            _name(job.class_name, job.method),
            context=_parent(job.trace),
            kind=SpanKind.CONSUMER,
            attributes=_attributes(job.id, job.class_name, job.method, number),
        )
        self._token = context.attach(trace.set_span_in_context(self._span))

    def end(self, attempt: AttemptInfo) -> None:
        context.detach(self._token)
        _record(self._span, attempt.error)
        self._span.end()


def _name(class_name: str, method: str) -> str:
    return f"bgjobs.attempt {class_name}::{method}"


def _parent(carried: dict[str, str] | None) -> context.Context | None:
    return TraceContextTextMapPropagator().extract(carried) if carried else None


def _attributes(job_id: int, class_name: str, method: str, attempt: int) -> dict[str, str | int]:
    return {
        "bgjobs.job.id": job_id,
        "bgjobs.job.class": class_name,
        "bgjobs.job.method": method,
        "bgjobs.attempt": attempt,
    }


def _record(span: Span, error: ErrorInfo | None) -> None:
    if error is None:
        span.set_attribute("bgjobs.outcome", SUCCEEDED)
        return
    span.set_attribute("bgjobs.outcome", FAILED)
    span.set_attribute("error.type", error.type)
    span.add_event(
        "exception",
        {
            "exception.type": error.type,
            "exception.message": error.message,
            "exception.stacktrace": error.traceback,
        },
    )
    span.set_status(Status(StatusCode.ERROR, error.summary()[:_SPAN_STATUS_LIMIT]))
