"""The example applications' own tests, written as an application's would be: with the
testing mode instead of a daemon (see `bgjobd.testing`)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bgjobd.testing import RecordedJobs
from examples.fastapi_app.app import create_lesson
from examples.flask_app.app import app
from tests.support.workspace import REPO


@pytest.fixture
def bgjobs_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The shipped configuration; the shipped jobs write their files under tmp_path."""
    monkeypatch.setenv("BGJOBS_STORAGE", str(tmp_path))
    return str(REPO / "bgjobs.toml")


def test_flask_view_queues_the_lesson_job(bgjobs_capture: RecordedJobs) -> None:
    answer = app.test_client().post("/lessons/Algebra")
    assert answer.status_code == 200
    [job] = bgjobs_capture.assert_enqueued("LessonCreatedService", "handle", ["Algebra"])
    assert answer.json is not None and answer.json["job_id"] == job.id


def test_flask_view_returns_the_result(bgjobs_eager: RecordedJobs, tmp_path: Path) -> None:
    answer = app.test_client().post("/lessons/Geometry?wait=5")
    assert answer.status_code == 200 and answer.json is not None
    assert answer.json["result"]["title"] == "Geometry"
    assert "Geometry" in (tmp_path / "logs" / "lesson_created.log").read_text()


def test_flask_view_reports_a_failed_job(bgjobs_eager: RecordedJobs) -> None:
    answer = app.test_client().post("/lessons/%20?wait=5")  # a blank title is refused
    assert answer.status_code == 502 and answer.json is not None
    assert "a lesson needs a title" in answer.json["error"]


def test_fastapi_route_returns_the_result(bgjobs_eager: RecordedJobs) -> None:
    answer = asyncio.run(create_lesson("Calculus", wait=5))
    assert answer["result"]["title"] == "Calculus"
    bgjobs_eager.assert_enqueued("LessonCreatedService", "handle", ["Calculus"], count=1)
