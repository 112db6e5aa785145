"""`[logging] format = "jsonl"` / `"both"`: the log's events as JSON lines, the same events
as the text files, parsed line by line; several processes append to one file safely."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bgjobd.joblog import JSONL_LOG, NO_JOB, JobLog, Status
from bgjobs.errors import RefusedError
from bgjobs.model import JobSpec
from tests.support.waiting import wait_for
from tests.support.workspace import REPO, Workspace

_TEXT_LINE = re.compile(r"\[(.{19})\] \[([A-Z]+)\] (.*?) - (.*)")
_ERROR_STATUSES = {"ERROR", "SECURITY", "WARNING"}


def _text_events(path: Path) -> list[tuple[str, str, str, str]]:
    """(second, status, label, message) of each line of a text log."""
    events = []
    for line in path.read_text().splitlines():
        match = _TEXT_LINE.fullmatch(line)
        assert match, line
        stamp, status, label, message = match.groups()
        events.append((stamp, status, label, message))
    return events


def _json_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_bytes().split(b"\n") if line]


def _as_text_event(record: dict[str, Any]) -> tuple[str, str, str, str]:
    label = NO_JOB if record["class"] is None else f"{record['class']}::{record['method']}"
    second = record["time"][:19].replace("T", " ")
    return (second, record["status"], label, record["message"])


def test_both_formats_carry_the_same_events(workspace: Workspace) -> None:
    workspace.write_config({"logging": {"format": "both"}})
    workspace.start_daemon()
    client = workspace.client()
    ok = client.submit([JobSpec(class_name="Echo", method="handle", params=["hi\x1b[2J"])]).ids[0]
    failed = client.submit([JobSpec(class_name="Fail", method="handle", params=["boom"])]).ids[0]
    with pytest.raises(RefusedError):
        client.submit([JobSpec(class_name="Nope", method="handle")])
    wait_for(lambda: all(client.get(job).state.is_final for job in (ok, failed)))
    workspace.daemons[0].stop()

    logs = workspace.storage / "logs"
    records = _json_lines(logs / JSONL_LOG)
    for record in records:
        assert record["time"].endswith("Z")
        assert set(record) == {
            "time", "status", "class", "method", "job_id", "attempt", "max_attempts", "message"
        }  # fmt: skip
    as_text = [_as_text_event(record) for record in records]
    assert [e for e in as_text if e[1] not in _ERROR_STATUSES] == _text_events(
        logs / "background_jobs.log"
    )
    assert [e for e in as_text if e[1] in _ERROR_STATUSES] == _text_events(
        logs / "background_jobs_errors.log"
    )
    started = next(r for r in records if r["job_id"] == ok and "started" in r["message"])
    assert (started["class"], started["method"], started["attempt"]) == ("Echo", "handle", 1)
    assert started["max_attempts"] == 1
    assert "\x1b" not in started["message"]  # escaped as in the text line
    assert any(r["job_id"] == failed and r["status"] == "ERROR" for r in records)
    assert any(r["status"] == "SECURITY" and r["class"] == "Nope" for r in records)
    assert any(r["status"] == "SUCCESS" and r["job_id"] == ok for r in records)


def test_jsonl_alone_writes_no_text_files(workspace: Workspace) -> None:
    workspace.write_config({"logging": {"format": "jsonl"}})
    workspace.start_daemon()
    client = workspace.client()
    job = client.submit([JobSpec(class_name="Echo", method="handle")]).ids[0]
    wait_for(lambda: client.get(job).state.is_final)
    logs = workspace.storage / "logs"
    wait_for(lambda: any(r["status"] == "SUCCESS" for r in _json_lines(logs / JSONL_LOG)))
    assert not (logs / "background_jobs.log").exists()
    assert not (logs / "background_jobs_errors.log").exists()


def test_a_bad_format_is_refused(workspace: Workspace) -> None:
    workspace.write_config({"logging": {"format": "xml"}})
    checked = workspace.bgjobctl("ping")
    assert checked.returncode == 2
    assert "logging.format" in checked.stderr


_WRITER = """
import sys
from pathlib import Path
from bgjobd.joblog import JobLog, Status
log = JobLog(Path(sys.argv[1]), "jsonl")
for n in range(int(sys.argv[3])):
    log.write(Status.INFO, "Writer::handle", f"job {sys.argv[2]} attempt {n + 1}/9 " + "x" * 3000)
"""


def test_several_processes_append_whole_lines(tmp_path: Path) -> None:
    processes, lines = 4, 500
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(tmp_path), str(number), str(lines)],
            cwd=REPO,
        )
        for number in range(processes)
    ]
    assert [writer.wait(60) for writer in writers] == [0] * processes
    records = _json_lines(tmp_path / JSONL_LOG)
    assert len(records) == processes * lines
    for number in range(processes):
        attempts = [r["attempt"] for r in records if r["job_id"] == number]
        assert attempts == list(range(1, lines + 1))
    JobLog(tmp_path, "both").write(Status.INFO, NO_JOB, "daemon news")
    assert _json_lines(tmp_path / JSONL_LOG)[-1]["class"] is None


def test_lines_written_in_a_batch_reach_every_file_whole_and_in_order(tmp_path: Path) -> None:
    """`JobLog.batched` (a bulk submit's lines in one write): nothing is written until it
    ends, or until HELD_LINES_MAX lines wait; nested, the outer one writes."""
    from bgjobd.joblog import HELD_LINES_MAX, MAIN_LOG

    joblog = JobLog(tmp_path, "both")
    count = HELD_LINES_MAX + 10
    with joblog.batched():
        with joblog.batched():
            joblog.info("Echo::handle", "job 0 queued")
        assert not (tmp_path / MAIN_LOG).exists() or (tmp_path / MAIN_LOG).read_text() == ""
        for n in range(1, count):
            joblog.info("Echo::handle", f"job {n} queued")
        written = (tmp_path / MAIN_LOG).read_text().count("\n")
        assert written == HELD_LINES_MAX  # the first HELD_LINES_MAX, at once
    joblog.error("Echo::handle", "after the batch")
    joblog.close()
    texts = [message for _, _, _, message in _text_events(tmp_path / MAIN_LOG)]
    assert texts == [f"job {n} queued" for n in range(count)]
    records = _json_lines(tmp_path / JSONL_LOG)
    assert [record["job_id"] for record in records[:count]] == list(range(count))
    assert records[-1]["message"] == "after the batch"
