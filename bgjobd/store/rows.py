"""A job's row as every backend stores it: the column list, the msgpack codecs of its
blob columns, and its decoding into `JobInfo` (the final attempt described by the row itself,
see `jobs.outcome` in schema.sql)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final

import msgspec

from bgjobs.model import AttemptInfo, ErrorInfo, JobInfo, JobState, Outcome, Priority

PRIORITIES: Final = (Priority.HIGH, Priority.MEDIUM, Priority.LOW)
COLUMNS: Final = (
    "id, class_name, method, params, priority, state, run_at, attempts, max_attempts, "
    "timeout, created_at, started_at, finished_at, result, error, reason, worker_pid, owner, "
    "chain_id, chain_position, chain_length, unique_key, round, outcome, idempotency_key, trace, "
    "batch_id, batch_on_failure, queue"
)

encode = msgspec.msgpack.Encoder().encode
decode_any = msgspec.msgpack.Decoder().decode
decode_params = msgspec.msgpack.Decoder(list[Any]).decode
decode_error = msgspec.msgpack.Decoder(ErrorInfo).decode
decode_trace = msgspec.msgpack.Decoder(dict[str, str]).decode


def time_of(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


def row_to_job(row: tuple[Any, ...], history: list[AttemptInfo] | None = None) -> JobInfo:
    return JobInfo(
        id=row[0],
        class_name=row[1],
        method=row[2],
        params=decode_params(row[3]),
        priority=PRIORITIES[row[4]],
        state=JobState(row[5]),
        run_at=datetime.fromtimestamp(row[6], UTC),
        attempts=row[7],
        max_attempts=row[8],
        timeout=row[9],
        created_at=datetime.fromtimestamp(row[10], UTC),
        started_at=time_of(row[11]),
        finished_at=time_of(row[12]),
        result=None if row[13] is None else decode_any(row[13]),
        error=None if row[14] is None else decode_error(row[14]),
        reason=row[15],
        # A final row keeps its last worker's pid for that attempt's history entry.
        worker_pid=row[16] if row[5] == "running" else None,
        owner=row[17],
        chain_id=row[18],
        chain_position=row[19],
        chain_length=row[20],
        unique_key=row[21],
        key=row[24],
        trace=None if row[25] is None else decode_trace(row[25]),
        history=history or [],
        batch_id=row[26],
        run_callback_on_failure=bool(row[27]),
        queue=row[28],
    )


def running_attempt(row: tuple[Any, ...]) -> AttemptInfo:
    """The attempt under way, as the job's row describes it (its own row comes at its end)."""
    return AttemptInfo(
        number=row[7],
        started_at=datetime.fromtimestamp(row[11] or row[6], UTC),
        worker_pid=row[16],
        round=row[22],
        node=row[17],
    )


def final_attempt(row: tuple[Any, ...]) -> AttemptInfo:
    """The job's final attempt, which its row describes (jobs.outcome in schema.sql)."""
    outcome = Outcome(row[23])
    failed = outcome not in (Outcome.SUCCEEDED, Outcome.CANCELLED)
    finished = row[12] if row[12] is not None else row[11]
    started = row[11] if row[11] is not None else finished
    return AttemptInfo(
        number=row[7],
        started_at=datetime.fromtimestamp(started, UTC),
        finished_at=time_of(finished),
        outcome=outcome,
        worker_pid=row[16],
        error=decode_error(row[14]) if failed and row[14] is not None else None,
        duration=None if finished is None or started is None else finished - started,
        round=row[22],
        node=row[17],
    )
