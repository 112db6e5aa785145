from __future__ import annotations

from typing import Any

from jobs.notification_service import NotificationService
from jobs.support import append_json, now


class LessonCreatedService:
    """Records a newly created lesson and announces it."""

    def __init__(self, notifications: NotificationService | None = None) -> None:
        self.notifications = notifications or NotificationService()

    def handle(self, lesson_title: str) -> dict[str, Any]:
        if not str(lesson_title).strip():
            raise ValueError("a lesson needs a title")
        lesson = {"title": lesson_title, "created_at": now()}
        append_json("lesson_created.log", lesson)
        self.notifications.notify(f"New lesson created: {lesson_title}")
        return lesson
