from __future__ import annotations

from typing import Any

from jobs.support import append_json, now


class LessonEndedService:
    """Records the end of a lesson, the user's progress, and issues a certificate."""

    def handle(self, user_id: str, lesson_id: str) -> dict[str, Any]:
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
