"""A task backend for Django's Tasks framework (`django.tasks` in Django 6, the
`django-tasks` package before it) that runs tasks in bgjobs:

    TASKS = {
        "default": {
            "BACKEND": "bgjobctl.django_backend.BgjobsBackend",
            "OPTIONS": {"TASKS": ["shop.tasks.*"]},   # optional; see below
        }
    }

`enqueue` submits one bgjobs job, `DjangoTask.run(settings module, task path, args,
kwargs)`, whose id is the result's id; `get_result` reads the job back. In the daemon the
worker sets Django up with the project's settings, runs the task function and closes the
database connections it left open.

Two allow-lists rule. bgjobs' own: `DjangoTask = ["run"]` in `allowed_jobs`, with
`jobs_package = "bgjobctl.django_backend"` (or a jobs package that re-exports
`DjangoTask`). Django's side: only tasks whose path matches `OPTIONS["TASKS"]` (exact
paths, or `module.*`), by default those in the `tasks` module of an installed app, are
enqueued, and the worker checks again before it imports anything.

Priorities map onto bgjobs' three: above 0 high, below 0 low, 0 the job's configured
priority. `run_after` is a delay; queues are not distinguished yet. A task is enqueued when
`enqueue` is called, as Django defines it: wrap the call in
`transaction.on_commit(...)` to enqueue only once the data it needs is committed.
"""

from __future__ import annotations

import importlib
import os
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from bgjobs.errors import NotFound
from bgjobs.model import JobInfo, JobState, Priority

if TYPE_CHECKING:  # the Django 6 names are the same in `django.tasks`
    from django_tasks.backends.base import BaseTaskBackend
    from django_tasks.base import Task, TaskResult
else:
    try:
        from django.tasks.backends.base import BaseTaskBackend
    except ImportError:
        from django_tasks.backends.base import BaseTaskBackend

JOB_CLASS: Final = "DjangoTask"
JOB_METHOD: Final = "run"


def _tasks_module() -> Any:
    try:
        return importlib.import_module("django.tasks")
    except ImportError:
        return importlib.import_module("django_tasks")


_RENAMED: Final = {"InvalidTaskError": "InvalidTask"}
"""`django-tasks` names on the left, Django 6's on the right."""


def _tasks_part(name: str) -> Any:
    """A name from the framework's `base` (Task, TaskResult, ...) or `exceptions`, under
    its `django-tasks` name or Django 6's."""
    package = _tasks_module().__name__
    for module in ("base", "exceptions"):
        for spelling in (name, _RENAMED.get(name, name)):
            found = getattr(importlib.import_module(f"{package}.{module}"), spelling, None)
            if found is not None:
                return found
    raise ImportError(f"{package} has no {name}")


def task_allowed(path: str, patterns: list[str]) -> bool:
    module = path.rpartition(".")[0]
    return any(
        path == pattern or (pattern.endswith(".*") and module == pattern[:-2])
        for pattern in patterns
    )


def default_patterns() -> list[str]:
    from django.apps import apps

    return [f"{app.name}.tasks.*" for app in apps.get_app_configs()]


class BgjobsBackend(BaseTaskBackend):
    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        from bgjobctl.library import JobClient

        self._client = JobClient(
            config=self.options.get("CONFIG"),
            socket=self.options.get("SOCKET"),
            fallback=self.options.get("FALLBACK", "error"),
        )

    def _patterns(self) -> list[str]:
        return list(self.options.get("TASKS") or default_patterns())

    def validate_task(self, task: Task[Any, Any]) -> None:
        super().validate_task(task)
        if task.takes_context:
            raise _tasks_part("InvalidTaskError")("bgjobs does not pass a task context")
        if not task_allowed(task.module_path, self._patterns()):
            raise _tasks_part("InvalidTaskError")(
                f"{task.module_path} is not in the bgjobs backend's TASKS"
            )

    def enqueue(self, task: Task[Any, Any], args: Any, kwargs: Any) -> TaskResult[Any]:
        from bgjobctl.library import make_spec

        self.validate_task(task)
        settings_module = os.environ.get("DJANGO_SETTINGS_MODULE", "")
        result = _tasks_part("TaskResult")(
            task=task,
            id="",
            status=_tasks_part("TaskResultStatus").READY,
            enqueued_at=None,
            started_at=None,
            finished_at=None,
            last_attempted_at=None,
            args=list(args),
            kwargs=dict(kwargs),
            backend=self.alias,
            errors=[],
            worker_ids=[],
        )
        spec = make_spec(
            JOB_CLASS,
            JOB_METHOD,
            [settings_module, task.module_path, result.args, result.kwargs],
            priority=_priority(task.priority),
            at=task.run_after,
        )
        handle = self._client.submit(spec)
        object.__setattr__(result, "id", str(handle.id))
        object.__setattr__(result, "enqueued_at", datetime.now(UTC))
        return result  # type: ignore[no-any-return]

    def get_result(self, result_id: str) -> TaskResult[Any]:
        missing = _tasks_part("TaskResultDoesNotExist")
        if not result_id.isdecimal() or not result_id.isascii():
            raise missing(result_id)
        try:
            job = self._client.client.get(int(result_id))
        except NotFound:
            raise missing(result_id) from None
        if job.class_name != JOB_CLASS or len(job.params) != 4:
            raise missing(result_id)
        return self._result_of(job)

    def _result_of(self, job: JobInfo) -> TaskResult[Any]:
        from django.utils.module_loading import import_string

        _settings, path, args, kwargs = job.params
        status = _tasks_part("TaskResultStatus")
        task = import_string(path)
        errors = [
            _tasks_part("TaskError")(
                exception_class_path=_importable(attempt.error.hierarchy or [attempt.error.type]),
                traceback=attempt.error.traceback,
            )
            for attempt in job.history
            if attempt.error is not None
        ]
        if job.state is JobState.SUCCEEDED:
            state = status.SUCCESSFUL
        elif job.state in (JobState.FAILED, JobState.CANCELLED):
            state = status.FAILED
        elif job.state is JobState.RUNNING:
            state = status.RUNNING
        else:
            state = status.READY
        result = _tasks_part("TaskResult")(
            task=task,
            id=str(job.id),
            status=state,
            enqueued_at=job.created_at,
            started_at=job.history[0].started_at if job.history else None,
            finished_at=job.finished_at,
            last_attempted_at=job.started_at,
            args=args,
            kwargs=kwargs,
            backend=self.alias,
            errors=errors,
            worker_ids=[f"{job.owner}:{attempt.worker_pid}" for attempt in job.history],
        )
        object.__setattr__(result, "_return_value", job.result)
        return result  # type: ignore[no-any-return]


def _priority(value: int) -> Priority | None:
    if value > 0:
        return Priority.HIGH
    if value < 0:
        return Priority.LOW
    return None


def _importable(hierarchy: list[str]) -> str:
    """The exception's dotted path, as Django's `TaskError` wants it (`builtins.` for
    the built-in ones, which bgjobs records by their short name)."""
    name = hierarchy[0]
    return name if "." in name else f"builtins.{name}"


class DjangoTask:
    """The job that runs a Django task in a bgjobs worker."""

    def run(self, settings_module: str, path: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
        _set_up(settings_module)
        from django.db import close_old_connections

        patterns = _worker_patterns()
        if not task_allowed(path, patterns):
            raise PermissionError(f"task {path} is not allowed (TASKS: {patterns})")
        from django.utils.module_loading import import_string

        task = import_string(path)
        if not isinstance(task, _tasks_part("Task")):
            raise PermissionError(f"{path} is not a task")
        close_old_connections()
        try:
            return task.call(*args, **kwargs)
        finally:
            close_old_connections()


def _set_up(settings_module: str) -> None:
    current = os.environ.setdefault("DJANGO_SETTINGS_MODULE", settings_module)
    if settings_module and current != settings_module:
        raise RuntimeError(
            f"this worker runs Django project {current}, not {settings_module}; "
            "give each project a daemon of its own"
        )
    import django
    from django.apps import apps

    if not apps.ready:
        django.setup()


def _worker_patterns() -> list[str]:
    """The TASKS of every bgjobs backend in the project's settings."""
    from django.conf import settings

    patterns: list[str] = []
    for options in getattr(settings, "TASKS", {}).values():
        if options.get("BACKEND") == f"{__name__}.BgjobsBackend":
            patterns += options.get("OPTIONS", {}).get("TASKS") or default_patterns()
    return patterns
