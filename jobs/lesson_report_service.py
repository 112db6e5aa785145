from __future__ import annotations

from typing import Any

from jobs.support import append_json, now


class LessonReportService:
    """Reports on a lesson once every student's end of it was recorded: the callback of a
    batch of `LessonEndedService` jobs, which receives their certificates (None for a job
    that failed) first."""

    def handle(self, certificates: list[dict[str, Any] | None], lesson: str = "") -> dict[str, Any]:
        issued = [entry["certificate"] for entry in certificates if entry is not None]
        report = {
            "lesson": lesson,
            "certificates": issued,
            "missing": len(certificates) - len(issued),
            "reported_at": now(),
        }
        append_json("lesson_report.log", report)
        return report
