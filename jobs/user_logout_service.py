from __future__ import annotations

from jobs.support import append_line
from jobs.user_dashboard_service import UserDashboardService


class UserLogoutService:
    """Records a logout and, when asked, resets the user's dashboard."""

    def handle(self, user_id: str, reset_dashboard: str = "") -> str:
        append_line("user_logouts.log", f"User {user_id} logged out")
        if reset_dashboard.lower() in ("1", "true", "yes", "reset"):
            UserDashboardService().reset(user_id)
        return f"user {user_id} logged out"
