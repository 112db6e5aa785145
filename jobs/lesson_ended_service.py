from __future__ import annotations

from typing import Any

from jobs.support import append_json, now


class LessonEndedService:
    """Records the end of a lesson, the user's progress, and issues a certificate.

    Called as `handle(user_id, lesson_id)`; as the link after `LessonStartedService` in a
    chain it receives that job's record first, and takes the user and lesson from it
    (`--then LessonEndedService:handle`), unless they are given after it.
    """

    def handle(self, first: str | dict[str, Any], *rest: str) -> dict[str, Any]:
        if isinstance(first, dict):
            started = first
            user_id, lesson_id = rest if len(rest) == 2 else (None, None)
            user_id = str(user_id or started["user_id"])
            lesson_id = str(lesson_id or started["lesson_id"])
        elif len(rest) == 1:
            user_id, lesson_id = first, rest[0]
        else:
            raise TypeError(
                "LessonEndedService.handle takes (user_id, lesson_id), or a lesson's start "
                f"record first in a chain; got {1 + len(rest)} parameters"
            )
        ended_at = now()
        append_json(
            "lesson_ended.log", {"user_id": user_id, "lesson_id": lesson_id, "ended_at": ended_at}
        )
        append_json(
            "progress.log", {"user_id": user_id, "lesson_id": lesson_id, "status": "completed"}
        )
        certificate = {
            "user_id": user_id,
            "lesson_id": lesson_id,
            "certificate": f"CERT-{user_id}-{lesson_id}",
            "issued_at": ended_at,
        }
        append_json("certificate.log", certificate)
        return certificate
