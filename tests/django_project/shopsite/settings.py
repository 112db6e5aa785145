"""A small Django project for the bgjobs task backend's tests."""

from __future__ import annotations

import importlib.util
import os

SECRET_KEY = "tests-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
USE_TZ = True
ROOT_URLCONF = "shopsite.urls"
# Django 6 has `django.tasks`; before it, the `django-tasks` package is an app of its own.
_TASKS_APP = [] if importlib.util.find_spec("django.tasks") else ["django_tasks"]
INSTALLED_APPS = ["django.contrib.contenttypes", *_TASKS_APP, "shop"]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("SHOP_DB", "shop.sqlite3"),
        "OPTIONS": {"timeout": 20},
    }
}
if os.environ.get("SHOP_PG_SCHEMA"):
    # On PostgreSQL (the transactional enqueue's tests): the test server, the tables in a
    # schema of the test's own.
    from psycopg.conninfo import conninfo_to_dict

    _PG = conninfo_to_dict(os.environ["SHOP_PG_DSN"])
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": _PG.get("dbname", "test"),
            "USER": _PG.get("user", "postgres"),
            "PASSWORD": _PG.get("password", ""),
            "HOST": _PG.get("host", "127.0.0.1"),
            "PORT": str(_PG.get("port", "5432")),
            "OPTIONS": {"options": f"-c search_path={os.environ['SHOP_PG_SCHEMA']}"},
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
TASKS = {
    "default": {
        "BACKEND": "bgjobctl.django_backend.BgjobsBackend",
        "OPTIONS": {"TASKS": ["shop.tasks.*"]},
    }
}
