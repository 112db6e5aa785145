"""gunicorn settings for the prefork test: the master submits a job before it forks its
workers, so every worker inherits that connection and must open its own."""

from __future__ import annotations

from bgjobctl import run_background_job


def on_starting(server: object) -> None:
    run_background_job("LessonCreatedService", "handle", ["from the master"], fallback="error")
