"""A Flask app that hands work to bgjobs, meant to run under gunicorn's prefork workers:

    BGJOBS_CONFIG=/path/to/bgjobs.toml gunicorn -w 4 --preload examples.flask_app.app:app

`run_background_job` keeps one connection per process and opens a new one in a forked
child, so the app may be imported (and even submit) before gunicorn forks its workers.
"""

from __future__ import annotations

import os
from typing import Any

from flask import Flask, request

from bgjobctl import JobFailed, run_background_job

app = Flask(__name__)


@app.post("/lessons/<title>")
def create_lesson(title: str) -> tuple[dict[str, Any], int]:
    """Queue the lesson's job and answer at once; with `?wait=SECONDS`, answer with its
    result instead."""
    handle = run_background_job("LessonCreatedService", "handle", [title])
    answer: dict[str, Any] = {"job_id": handle.id, "worker_pid": os.getpid()}
    wait = float(request.args.get("wait", 0))
    if wait:
        try:
            answer["result"] = handle.wait(wait)
        except JobFailed as exc:
            return {**answer, "error": str(exc)}, 502
    return answer, 200
