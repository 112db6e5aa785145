from __future__ import annotations

from jobs.support import append_line


class UserDashboardService:
    """Prepares a user's dashboard; here, by recording what was done in `dashboard.log`."""

    def customize(self, user_id: str) -> None:
        append_line("dashboard.log", f"Dashboard customized for user {user_id}")

    def reset(self, user_id: str) -> None:
        append_line("dashboard.log", f"Dashboard reset for user {user_id}")
