from __future__ import annotations

from jobs.support import append_line
from jobs.user_dashboard_service import UserDashboardService


class UserLoginService:
    """Records a login, then customises the user's dashboard."""

    def handle(self, user_id: str) -> str:
        append_line("user_logins.log", f"User {user_id} logged in")
        UserDashboardService().customize(user_id)
        return f"user {user_id} logged in"
