"""Text that cannot hurt, in-process: escaping, the log line cap, errors with lone
surrogates, odd searches against a real SQLite store, frames nested too deeply."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest

from bgjobd.joblog import MAX_LINE, Status, format_line
from bgjobd.store.base import JobQuery, NewJob
from bgjobd.store.sqlite import SQLiteStore
from bgjobd.worker.execute import describe_error
from bgjobs.model import JobInfo, JobSpec, JobState, Priority
from bgjobs.protocol import (
    ErrorCode,
    FrameError,
    JobList,
    Submit,
    decode_reply,
    decode_request,
)
from bgjobs.text import cap, escape_controls

HOSTILE = "\x1b[2J\x07\x9b31m\x85\u202e\u2066\u061c\u200e\u2028\ud800"


def test_every_control_bidi_and_surrogate_is_escaped() -> None:
    shown = escape_controls(f"a{HOSTILE}\n\tz")
    assert shown.isprintable() and shown.isascii(), shown
    for escape in (r"\x1b", r"\x07", r"\x9b", r"\x85", r"\u202e", r"\u2066", r"\u061c"):
        assert escape in shown
    assert shown.endswith(r"\ud800\n\tz")
    kept = escape_controls("line 1\n\tline 2\x1b", keep_lines=True)
    assert kept == "line 1\n\tline 2\\x1b"
    assert escape_controls("plain café ✓") == "plain café ✓"


def test_a_log_line_is_escaped_and_capped() -> None:
    line = format_line(Status.SECURITY, "X" * 1_000_000 + "\u202e", f"bad {HOSTILE}" * 10_000)
    assert len(line) < MAX_LINE + 200
    assert line.count("\n") == 1 and line.endswith("characters cut)\n")
    body = line[:-1]
    assert body.isprintable(), "no raw control, bidi or surrogate"
    assert cap("abcdef", 4) == "abcd… (2 characters cut)"


def test_an_error_with_a_lone_surrogate_is_described_and_encodable() -> None:
    try:
        raise ValueError("bad \ud800 text")
    except ValueError as exc:
        info = describe_error(exc)
    msgspec.msgpack.encode(info)  # what the worker sends: it must encode
    assert info.type == "ValueError"
    assert info.message == "bad \\ud800 text"
    assert "bad \\ud800 text" in (info.traceback or "")


def test_an_error_whose_str_raises_is_still_described() -> None:
    class Sulky(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no")

    info = describe_error(Sulky())
    assert info.type == "Sulky" and "RuntimeError" in info.message


@pytest.mark.parametrize(
    "needle",
    ["99999999999999999999999", "²", "٣", "-1", "%", "_", "'", "\ud800", "9" * 5000, "1 OR 1"],
)
def test_odd_searches_find_nothing_and_never_fail(tmp_path: Path, needle: str) -> None:
    store = SQLiteStore(tmp_path / "bgjobs.db")
    try:
        store.add([_job(["ordinary"])])
        jobs, total = store.search(JobQuery(search=needle))
        assert (jobs, total) == ([], 0)
        found, _ = store.search(JobQuery(search="1"))
        assert [job.id for job in found] == [1], "an ASCII id still finds its job"
    finally:
        store.close()


def _job(params: list[str]) -> NewJob:
    now = time.time()
    return NewJob(
        class_name="Echo",
        method="handle",
        params=list(params),
        priority=Priority.MEDIUM,
        state=JobState.QUEUED,
        run_at=now,
        max_attempts=1,
        timeout=30.0,
        created_at=now,
    )


def _nested(message: msgspec.Struct) -> bytes:
    """The message's encoding with its one `[7]` (params or result) nested 200,000 deep."""
    frame = msgspec.msgpack.encode(message)
    at = frame.index(b"\x91\x07")
    return frame[:at] + b"\x91" * 200_000 + b"\x07" + frame[at + 2 :]


def test_a_frame_nested_too_deeply_is_a_bad_request() -> None:
    request = Submit(jobs=[JobSpec(class_name="A", method="b", params=[7])])
    reply = JobList(jobs=[store_job()], total=1)
    for decode, frame in ((decode_request, _nested(request)), (decode_reply, _nested(reply))):
        with pytest.raises(FrameError) as caught:
            decode(frame)
        assert caught.value.code is ErrorCode.BAD_REQUEST
        assert "nested too deeply" in str(caught.value)


def store_job() -> JobInfo:
    now = datetime.now(UTC)
    return JobInfo(
        id=1,
        class_name="A",
        method="b",
        params=[7],
        priority=Priority.MEDIUM,
        state=JobState.QUEUED,
        run_at=now,
        attempts=0,
        max_attempts=1,
        timeout=1.0,
        created_at=now,
    )
