"""OpenTelemetry: the trace context of the code that submits a job travels with it, and each
attempt is a span of that trace, exported by the worker (here through the tests' setup
hook, `testjobs.tracing.export_to_file`, since the worker is another process)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Span, StatusCode, Tracer

from bgjobctl import aclient
from bgjobctl.library import JobHandle, close_clients, make_spec, run_background_job
from bgjobd.testing import RecordedJobs
from bgjobs.errors import BgjobsError
from bgjobs.model import JobSpec, JobState
from bgjobs.tracing import bounded
from tests.support.waiting import wait_for
from tests.support.workspace import DEFAULT_SETTINGS, TEST_JOBS, Workspace, merged

TRACED_JOBS = {"Traced": ["handle"], "AsyncTraced": ["handle"], "TracingLoaded": ["handle"]}
TRACING = {"enabled": True, "setup": "testjobs.tracing:export_to_file"}


@pytest.fixture
def tracer() -> Iterator[tuple[Tracer, InMemorySpanExporter]]:
    """The application's side: an SDK tracer (not installed globally: the test session is
    one process) whose spans are kept in memory."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider.get_tracer("the application"), exporter
    provider.shutdown()
    close_clients()


def submit_in_span(
    workspace: Workspace, tracer: Tracer, *args: Any, **kwargs: Any
) -> tuple[Span, JobHandle]:
    with tracer.start_as_current_span("handle request") as span:
        handle = run_background_job(
            *args, config=str(workspace.config_path), fallback="error", **kwargs
        )
    return span, handle


def exported(workspace: Workspace) -> list[dict[str, Any]]:
    path = workspace.storage / "spans.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def attempt_spans(workspace: Workspace, count: int) -> list[dict[str, Any]]:
    """The attempts' spans, once there are `count` of them, in the order they ended."""

    def found() -> list[dict[str, Any]]:
        spans = [s for s in exported(workspace) if s["name"].startswith("bgjobs.attempt ")]
        return spans if len(spans) >= count else []

    return wait_for(found, what=f"{count} attempt span(s)")


def ids(span: Span) -> tuple[str, str]:
    context = span.get_span_context()
    return f"{context.trace_id:032x}", f"{context.span_id:016x}"


def test_each_attempt_is_a_span_under_the_enqueuing_span(
    workspace: Workspace, tracer: tuple[Tracer, InMemorySpanExporter]
) -> None:
    """The attempt's span has the submitting span as its (remote) parent and the job's
    attributes; the job's own span nests under it (a coroutine's too); a chain's next link
    is in the same trace."""
    workspace.write_config({"allowed_jobs": TRACED_JOBS, "tracing": TRACING})
    workspace.start_daemon()
    span, handle = submit_in_span(
        workspace, tracer[0], "Traced", "handle", ["x"], then=[("AsyncTraced", "handle")]
    )
    assert handle.wait(20) == [["x"]]
    trace_id, parent_id = ids(span)
    assert [s.name for s in tracer[1].get_finished_spans()] == ["handle request"]

    first, second = attempt_spans(workspace, 2)
    assert first["name"] == "bgjobs.attempt Traced::handle"
    assert first["kind"] == "CONSUMER"
    assert (first["trace_id"], first["parent_span_id"]) == (trace_id, parent_id)
    assert first["remote_parent"]
    assert first["attributes"] == {
        "bgjobs.job.id": handle.id,
        "bgjobs.job.class": "Traced",
        "bgjobs.job.method": "handle",
        "bgjobs.attempt": 1,
        "bgjobs.outcome": "succeeded",
    }
    assert first["status"] == "UNSET"
    inner = [s for s in exported(workspace) if s["name"] == "inner work"]
    assert [(s["trace_id"], s["parent_span_id"]) for s in inner] == [(trace_id, first["span_id"])]
    assert second["name"] == "bgjobs.attempt AsyncTraced::handle"
    assert (second["trace_id"], second["parent_span_id"]) == (trace_id, parent_id)
    assert second["attributes"]["bgjobs.job.id"] == handle.last_id
    inner = [s for s in exported(workspace) if s["name"] == "inner async work"]
    assert [(s["trace_id"], s["parent_span_id"]) for s in inner] == [(trace_id, second["span_id"])]


def test_a_failed_attempt_is_an_error_and_its_retry_a_second_span(
    workspace: Workspace, tracer: tuple[Tracer, InMemorySpanExporter]
) -> None:
    workspace.write_config({"retry_attempts": 1, "tracing": TRACING})
    workspace.start_daemon()
    counter = str(workspace.root / "flaky")
    span, handle = submit_in_span(workspace, tracer[0], "Flaky", "handle", [counter, 1])
    assert handle.wait(20) == 2
    trace_id, parent_id = ids(span)

    failed, retried = attempt_spans(workspace, 2)
    for attempt in (failed, retried):
        assert (attempt["trace_id"], attempt["parent_span_id"]) == (trace_id, parent_id)
        assert attempt["attributes"]["bgjobs.job.id"] == handle.id
    assert failed["attributes"]["bgjobs.attempt"] == 1
    assert failed["attributes"]["bgjobs.outcome"] == "failed"
    assert failed["attributes"]["error.type"] == "ConnectionRefusedError"
    assert failed["status"] == "ERROR"
    assert failed["status_description"] == "ConnectionRefusedError: call 1 refused"
    assert failed["events"] == ["exception"]
    assert retried["attributes"]["bgjobs.attempt"] == 2
    assert retried["attributes"]["bgjobs.outcome"] == "succeeded"
    assert retried["status"] == "UNSET"


def test_the_asyncio_client_carries_the_context_of_its_task(
    workspace: Workspace, tracer: tuple[Tracer, InMemorySpanExporter]
) -> None:
    """Two tasks submit concurrently, each in a span of its own: each job joins its own."""
    workspace.write_config({"tracing": TRACING})
    workspace.start_daemon()

    async def submit(name: str) -> tuple[Span, int | None]:
        with tracer[0].start_as_current_span(name) as span:
            handle = await aclient.run_background_job_async(
                "Echo", "handle", [name], config=str(workspace.config_path), fallback="error"
            )
        assert await handle.wait(20) == [name]
        return span, handle.id

    async def both() -> list[tuple[Span, int | None]]:
        try:
            return list(await asyncio.gather(submit("one"), submit("two")))
        finally:
            await aclient.close_clients()

    submitted = asyncio.run(both())
    spans = {span["attributes"]["bgjobs.job.id"]: span for span in attempt_spans(workspace, 2)}
    for span, job_id in submitted:
        assert job_id is not None
        assert (spans[job_id]["trace_id"], spans[job_id]["parent_span_id"]) == ids(span)


def test_an_attempt_stopped_at_its_deadline_ends_its_span(
    workspace: Workspace, tracer: tuple[Tracer, InMemorySpanExporter]
) -> None:
    """SIGTERM ends the job inside its span: the span is exported as the worker exits."""
    workspace.write_config({"tracing": TRACING, "jobs": {"Sleep": {"timeout": 0.5}}})
    workspace.start_daemon()
    _, handle = submit_in_span(workspace, tracer[0], "Sleep", "handle", [30])
    assert workspace.client().wait(handle.id or 0, 20).state is JobState.FAILED
    (stopped,) = attempt_spans(workspace, 1)
    assert stopped["attributes"]["bgjobs.outcome"] == "stopped"
    assert stopped["status"] == "ERROR"


def test_without_tracing_configured_workers_never_load_opentelemetry(
    workspace: Workspace, tracer: tuple[Tracer, InMemorySpanExporter]
) -> None:
    """The context still travels with the job (tracing may be turned on later, for a
    retry), but a worker without `[tracing]` neither loads OpenTelemetry nor exports."""
    workspace.write_config({"allowed_jobs": TRACED_JOBS, "tracing": {"setup": TRACING["setup"]}})
    workspace.start_daemon()
    span, handle = submit_in_span(workspace, tracer[0], "TracingLoaded", "handle")
    assert handle.wait(20) is False
    stored = workspace.client().get(handle.id or 0)
    assert stored.trace is not None
    assert stored.trace["traceparent"].startswith("00-{}-{}-".format(*ids(span)))
    assert exported(workspace) == []


def test_outside_a_span_a_job_carries_no_trace() -> None:
    assert make_spec("Echo", "handle").trace is None


def test_the_client_keeps_only_a_trace_context_that_fits() -> None:
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    assert bounded({"traceparent": parent, "tracestate": "a=1", "baggage": "b=2"}) == {
        "traceparent": parent,
        "tracestate": "a=1",
    }
    assert bounded({"traceparent": parent, "tracestate": "a" * 513}) == {"traceparent": parent}
    assert bounded({"traceparent": "0" * 513, "tracestate": "a=1"}) is None
    assert bounded({}) is None


def test_a_tracing_setup_that_fails_leaves_jobs_running_and_says_why(
    workspace: Workspace, tracer: tuple[Tracer, InMemorySpanExporter]
) -> None:
    workspace.write_config({"tracing": {"enabled": True, "setup": "testjobs.missing:setup"}})
    workspace.start_daemon()
    _, handle = submit_in_span(workspace, tracer[0], "Echo", "handle", [1])
    assert handle.wait(20) == [1]
    warning = workspace.error_log()
    assert "tracing is off in worker" in warning
    assert "testjobs.missing:setup" in warning


@pytest.mark.parametrize(
    "trace",
    [
        {"traceparent": "00-" + "a" * 600},
        {"traceparent": "00-x", "baggage": "secret=1"},
        {"traceparent": "a", "tracestate": "b", "other": "c"},
    ],
)
def test_an_oversized_or_foreign_trace_context_is_refused(
    workspace: Workspace, trace: dict[str, str]
) -> None:
    """The context comes from callers like params: bounded, and nothing is stored."""
    workspace.start_daemon()
    with pytest.raises(BgjobsError, match="trace"):
        workspace.client().submit([JobSpec(class_name="Echo", method="handle", trace=trace)])
    assert workspace.client().stats().counts == dict.fromkeys(
        [state.value for state in JobState], 0
    )


@contextlib.contextmanager
def otlp_collector() -> Iterator[tuple[str, list[ExportTraceServiceRequest]]]:
    """An OTLP/HTTP endpoint on a free local port: its URL, and the requests it received."""
    received: list[ExportTraceServiceRequest] = []

    class Collector(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if self.path == "/v1/traces":
                received.append(ExportTraceServiceRequest.FromString(body))
            answer = ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_without_a_setup_hook_workers_export_with_otlp_as_otel_variables_say(
    workspace: Workspace, tracer: tuple[Tracer, InMemorySpanExporter]
) -> None:
    with otlp_collector() as (endpoint, received):
        workspace.env |= {
            "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
            "OTEL_SERVICE_NAME": "shop-jobs",
            "OTEL_BSP_SCHEDULE_DELAY": "50",
        }
        workspace.write_config({"tracing": {"enabled": True}})
        workspace.start_daemon()
        span, handle = submit_in_span(workspace, tracer[0], "Echo", "handle", [1])
        assert handle.wait(20) == [1]

        def exported_attempt() -> list[tuple[Any, Any]]:
            return [
                (resource, found)
                for request in received
                for resource in request.resource_spans
                for scope in resource.scope_spans
                for found in scope.spans
                if found.name == "bgjobs.attempt Echo::handle"
            ]

        ((resource, attempt),) = wait_for(exported_attempt, what="the OTLP export")
    assert (attempt.trace_id.hex(), attempt.parent_span_id.hex()) == ids(span)
    names = {a.key: a.value.string_value for a in resource.resource.attributes}
    assert names["service.name"] == "shop-jobs"


@pytest.fixture(scope="module")
def global_spans() -> Iterator[InMemorySpanExporter]:
    """The testing mode makes its spans with the process's global tracer provider, which
    OpenTelemetry lets a process set once: an SDK one, to which this adds an exporter."""
    from opentelemetry import trace

    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        trace.set_tracer_provider(TracerProvider())
    provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield exporter
    exporter.shutdown()


@pytest.fixture
def bgjobs_config(tmp_path: Path) -> str:
    """The testing mode's configuration: the test jobs, tracing enabled."""
    (tmp_path / "testjobs").symlink_to(TEST_JOBS, target_is_directory=True)
    settings = merged(
        DEFAULT_SETTINGS,
        {"allowed_jobs": TRACED_JOBS, "retry_attempts": 1, "tracing": {"enabled": True}},
    )
    path = tmp_path / "bgjobs.toml"
    path.write_bytes(tomli_w.dumps(settings).encode())
    return str(path)


def test_the_testing_mode_makes_the_same_spans_in_process(
    bgjobs_capture: RecordedJobs,
    global_spans: InMemorySpanExporter,
    tracer: tuple[Tracer, InMemorySpanExporter],
    tmp_path: Path,
) -> None:
    """Captured in a span, run later outside it: the attempts are still its children."""
    global_spans.clear()
    with tracer[0].start_as_current_span("handle request") as span:
        traced = run_background_job("Traced", "handle", ["x"])
        counter = str(tmp_path / "flaky")
        flaky = run_background_job("Flaky", "handle", [counter, 1])
    bgjobs_capture.run_all()
    assert traced.wait(1) == ["x"] and flaky.wait(1) == 2
    spans = {
        (s.name, (s.attributes or {}).get("bgjobs.attempt")): s
        for s in global_spans.get_finished_spans()
    }
    trace_id, parent_id = ids(span)
    attempts = [
        spans["bgjobs.attempt Traced::handle", 1],
        spans["bgjobs.attempt Flaky::handle", 1],
        spans["bgjobs.attempt Flaky::handle", 2],
    ]
    for attempt in attempts:
        assert attempt.parent is not None
        assert (f"{attempt.parent.trace_id:032x}", f"{attempt.parent.span_id:016x}") == (
            trace_id,
            parent_id,
        )
    assert [(a.attributes or {}).get("bgjobs.outcome") for a in attempts] == [
        "succeeded",
        "failed",
        "succeeded",
    ]
    assert attempts[1].status.status_code is StatusCode.ERROR
    inner, first = spans["inner work", None], attempts[0].get_span_context()
    assert inner.parent is not None and first is not None
    assert inner.parent.span_id == first.span_id
