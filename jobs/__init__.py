"""The job classes: the default namespace in which short class names resolve, as
`App\\Services\\` was. Only classes exported here (and allow-listed in bgjobs.toml) run."""

from jobs.lesson_created_service import LessonCreatedService
from jobs.lesson_ended_service import LessonEndedService
from jobs.lesson_report_service import LessonReportService
from jobs.lesson_started_service import LessonStartedService
from jobs.notification_service import NotificationService
from jobs.user_dashboard_service import UserDashboardService
from jobs.user_login_service import UserLoginService
from jobs.user_logout_service import UserLogoutService

__all__ = [
    "LessonCreatedService",
    "LessonEndedService",
    "LessonReportService",
    "LessonStartedService",
    "NotificationService",
    "UserDashboardService",
    "UserLoginService",
    "UserLogoutService",
]
