from __future__ import annotations

import json
from typing import Any

from jobs.support import append_json, logs_dir, now


class PrerequisitesNotMet(Exception):
    pass


class LessonStartedService:
    """Records that a user started a lesson, once its prerequisites are met.

    Prerequisites are read from `prerequisites.json` in the logs directory, a map from a
    lesson id to the lesson ids that must be completed first (by `LessonEndedService`);
    without that file a lesson has none.
    """

    def handle(self, user_id: str, lesson_id: str) -> dict[str, Any]:
        missing = [
            required
            for required in self.prerequisites(str(lesson_id))
            if required not in self.completed_lessons(str(user_id))
        ]
        if missing:
            raise PrerequisitesNotMet(
                f"user {user_id} must complete lesson(s) {', '.join(missing)} before {lesson_id}"
            )
        record = {"user_id": user_id, "lesson_id": lesson_id, "started_at": now()}
        append_json("lesson_started.log", record)
        return record

    @staticmethod
    def prerequisites(lesson_id: str) -> list[str]:
        path = logs_dir() / "prerequisites.json"
        if not path.exists():
            return []
        table = json.loads(path.read_text(encoding="utf-8"))
        return [str(item) for item in table.get(lesson_id, [])]

    @staticmethod
    def completed_lessons(user_id: str) -> set[str]:
        path = logs_dir() / "progress.log"
        if not path.exists():
            return set()
        done = set()
        for line in path.read_text(encoding="utf-8").splitlines():
            record = json.loads(line.split("] ", 1)[1])
            if str(record.get("user_id")) == user_id and record.get("status") == "completed":
                done.add(str(record.get("lesson_id")))
        return done
