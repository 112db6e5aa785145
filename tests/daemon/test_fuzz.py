"""Property tests of the wire protocol: the framing and decoding in-process, then one real
daemon fed random frames and random well-formed requests. Whatever arrives, the daemon
answers with a typed reply or closes the connection, keeps serving, and prints no
traceback."""

from __future__ import annotations

import contextlib
import itertools
import socket
from collections.abc import Iterator
from datetime import UTC
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from bgjobs.model import ChainLink, JobSpec, JobState, Priority
from bgjobs.protocol import (
    HEADER_BYTES,
    MAX_JOB_ID,
    Cancel,
    Error,
    ErrorCode,
    FrameEncoder,
    FrameError,
    FrameReader,
    Get,
    GetStats,
    Hello,
    ListJobs,
    Ping,
    Reply,
    Request,
    RetryFailed,
    RetryJob,
    Submit,
    Subscribe,
    decode_request,
)
from tests.support.wire import RawConnection
from tests.support.workspace import DaemonProcess, Workspace

# In-process properties are cheap; examples against the daemon cost a connection and a
# ping each, so they are fewer. No example database: CI starts from a clean clone anyway.
FAST = settings(max_examples=300, deadline=None, database=None)
AGAINST_DAEMON = settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# msgpack's whole integer range, so that ids and counts at the edges get sent.
INTS = st.integers(min_value=-(2**63), max_value=2**64 - 1)
IDS = st.integers(min_value=0, max_value=MAX_JOB_ID)
"""What the protocol admits for ids, limits and offsets (others are refused on decoding)."""
TEXT = st.text(max_size=24)
SCALARS = (
    st.none()
    | st.booleans()
    | INTS
    | st.floats(allow_nan=False)  # NaN is never equal to itself: no round-trip equality
    | TEXT
    | st.binary(max_size=24)
)
VALUES: st.SearchStrategy[Any] = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=16,
)
DATETIMES = st.datetimes(timezones=st.just(UTC))


def requests(class_names: st.SearchStrategy[str] = TEXT) -> st.SearchStrategy[Request]:
    """Every kind of request, each field drawn over its whole type."""
    methods = st.sampled_from(["handle"]) | TEXT
    params = st.lists(VALUES, max_size=4)
    job_specs = st.builds(
        JobSpec,
        class_name=class_names,
        method=methods,
        params=params,
        priority=st.none() | st.sampled_from(Priority),
        delay=st.floats(allow_nan=False),
        run_at=st.none() | DATETIMES,
        then=st.lists(st.builds(ChainLink, class_names, methods, params), max_size=2),
    )
    optional_text = st.none() | TEXT
    return st.one_of(
        st.builds(Hello, rid=INTS, version=INTS, token=optional_text, client=TEXT),
        st.builds(Ping, rid=INTS),
        st.builds(Submit, rid=INTS, jobs=st.lists(job_specs, max_size=3)),
        st.builds(Get, rid=INTS, job_id=IDS, with_chain=st.booleans()),
        st.builds(
            ListJobs,
            rid=INTS,
            states=st.lists(st.sampled_from(JobState), max_size=3),
            class_name=optional_text,
            search=optional_text,
            limit=IDS,
            offset=IDS,
            oldest_first=st.booleans(),
        ),
        st.builds(Cancel, rid=INTS, job_id=IDS),
        st.builds(RetryJob, rid=INTS, job_id=IDS),
        st.builds(RetryFailed, rid=INTS, class_name=optional_text),
        st.builds(GetStats, rid=INTS),
        st.builds(Subscribe, rid=INTS, job_ids=st.lists(IDS, max_size=3)),
    )


def describe(reply: Reply | None) -> str:
    """A reply's kind, for the statistics of what the examples reached."""
    if reply is None:
        return "closed"
    return f"Error {reply.code}" if isinstance(reply, Error) else type(reply).__name__


def frame(body: bytes) -> bytes:
    return len(body).to_bytes(HEADER_BYTES, "big") + body


REQUEST_TAGS = ["Hello", "Ping", "Submit", "Get", "ListJobs", "Cancel", "RetryJob"]
REQUEST_TAGS += ["RetryFailed", "GetStats", "Subscribe", "Pong", "Error", "Nope"]
FIELD_NAMES = ["rid", "version", "jobs", "job_id", "states", "search", "limit", "offset"]
FIELD_NAMES += ["class_name", "method", "params", "job_ids", "with_chain", "token"]
# Bodies that get past msgpack to the message decoder: a tag and fields of any value.
NEAR_MISSES = st.builds(
    lambda tag, fields: msgspec.msgpack.encode({"type": tag, **fields}),
    st.sampled_from(REQUEST_TAGS),
    st.dictionaries(st.sampled_from(FIELD_NAMES), VALUES, max_size=4),
)
BODIES = st.binary(max_size=256) | st.builds(msgspec.msgpack.encode, VALUES) | NEAR_MISSES


def cut(data: bytes, cuts: list[int]) -> list[bytes]:
    """`data` split at the given offsets (taken modulo its length, in order)."""
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


# In-process: framing and decoding ---------------------------------------------------------

SMALL_CAP = 64


@FAST
@given(
    stream=st.lists(st.binary(max_size=80) | BODIES.map(frame), max_size=6).map(b"".join),
    cuts=st.lists(st.integers(min_value=0), max_size=8),
)
def test_frame_reader_raises_only_frame_errors_and_buffers_at_most_one_frame(
    stream: bytes, cuts: list[int]
) -> None:
    reader = FrameReader(max_frame=SMALL_CAP)
    fed = b""
    framed = b""
    for chunk in cut(stream, cuts):
        fed += chunk
        try:
            bodies = reader.feed(chunk)
        except FrameError:
            return
        framed += b"".join(frame(body) for body in bodies)
        assert reader.pending < HEADER_BYTES + SMALL_CAP
        assert framed + fed[len(framed) :] == fed  # frames come out whole and in order
        assert len(fed) - len(framed) == reader.pending


@FAST
@given(body=BODIES)
def test_decode_request_raises_only_frame_errors(body: bytes) -> None:
    with contextlib.suppress(FrameError):
        decode_request(body)


@FAST
@given(request=requests(), cuts=st.lists(st.integers(min_value=0), max_size=4))
def test_every_request_round_trips_through_the_framing(request: Request, cuts: list[int]) -> None:
    data = FrameEncoder().encode(request)
    reader = FrameReader()
    bodies = [body for chunk in cut(data, cuts) for body in reader.feed(chunk)]
    assert len(bodies) == 1 and reader.pending == 0
    assert decode_request(bodies[0]) == request


DEEPLY_NESTED_SUBMIT = (
    b"\x82\xa4type\xa6Submit\xa4jobs\x91\x83\xaaclass_name\xa4Echo\xa6method\xa6handle"
    b"\xa6params\x91" + b"\x91" * 5000 + b"\xc0"
)


def test_deeply_nested_params_are_a_frame_error() -> None:
    with pytest.raises(FrameError):
        decode_request(DEEPLY_NESTED_SUBMIT)


# Against a real daemon --------------------------------------------------------------------


class FuzzedDaemon:
    """One daemon for the module; each example checks it still answers and that its
    stderr gained no traceback."""

    def __init__(self, workspace: Workspace) -> None:
        self.workspace = workspace
        self.process: DaemonProcess = workspace.start_daemon()
        self._stderr_seen = 0

    def connect(self) -> RawConnection:
        return RawConnection(self.workspace.socket_path)

    def assert_healthy(self) -> None:
        assert self.process.answers(), "the daemon did not answer a ping"
        stderr = self.process.stderr
        new, self._stderr_seen = stderr[self._stderr_seen :], len(stderr)
        assert "Traceback" not in new, new


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzedDaemon]:
    workspace = Workspace(tmp_path_factory.mktemp("fuzz"))
    try:
        yield FuzzedDaemon(workspace)
    finally:
        exit_code = workspace.daemons[0].stop() if workspace.daemons else 0
        leftovers = workspace.close()
    assert exit_code == 0 and not leftovers, (exit_code, leftovers)


@AGAINST_DAEMON
@given(body=BODIES)
def test_any_frame_after_hello_gets_a_typed_reply_or_a_close(
    fuzzed: FuzzedDaemon, body: bytes
) -> None:
    with fuzzed.connect() as connection:
        connection.hello()
        connection.send(frame(body))
        event(describe(connection.reply()))  # typed (decoded), or None: a closed connection
    fuzzed.assert_healthy()


@AGAINST_DAEMON
@given(data=st.binary(max_size=512))
def test_any_byte_stream_then_eof_gets_typed_replies_and_a_close(
    fuzzed: FuzzedDaemon, data: bytes
) -> None:
    with fuzzed.connect() as connection:
        connection.hello()
        connection.send(data)
        connection.sock.shutdown(socket.SHUT_WR)
        for _ in range(len(data) // HEADER_BYTES + 2):
            if connection.reply() is None:
                break
        else:
            pytest.fail("the daemon kept the connection open after EOF")
    fuzzed.assert_healthy()


@AGAINST_DAEMON
@given(request=requests(class_names=st.sampled_from(["Echo", "Add"]) | TEXT))
def test_any_well_formed_request_gets_a_typed_reply_or_a_close(
    fuzzed: FuzzedDaemon, request: Request
) -> None:
    with fuzzed.connect() as connection:
        connection.hello()
        connection.send(connection.encoder.encode(request))
        event(describe(connection.reply()))
    fuzzed.assert_healthy()


@AGAINST_DAEMON
@given(request=requests(class_names=st.sampled_from(["Echo", "Add"]) | TEXT))
def test_no_well_formed_request_is_an_internal_error(
    fuzzed: FuzzedDaemon, request: Request
) -> None:
    with fuzzed.connect() as connection:
        connection.hello()
        connection.send(connection.encoder.encode(request))
        assert describe(connection.reply()) != f"Error {ErrorCode.INTERNAL}"
    fuzzed.assert_healthy()


def test_deeply_nested_params_get_an_error_without_a_traceback(fuzzed: FuzzedDaemon) -> None:
    with fuzzed.connect() as connection:
        connection.hello()
        connection.send(frame(DEEPLY_NESTED_SUBMIT))
        connection.reply()
    fuzzed.assert_healthy()


@given(
    job_id=st.integers(min_value=MAX_JOB_ID + 1, max_value=2**64 - 1)
    | st.integers(min_value=-(2**63), max_value=-1)
)
def test_ids_outside_what_a_store_holds_are_refused_on_decoding(job_id: int) -> None:
    body = msgspec.msgpack.encode({"type": "Get", "job_id": job_id})
    with pytest.raises(FrameError) as refused:
        decode_request(body)
    assert refused.value.code is ErrorCode.BAD_REQUEST
