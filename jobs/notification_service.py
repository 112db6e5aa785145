from __future__ import annotations

from jobs.support import append_line


class NotificationService:
    """Sends notifications; here, by writing them to `notification.log`."""

    def notify(self, message: str) -> None:
        append_line("notification.log", message)
