"""Settings of the async-views project (tests/web/test_django_async.py runs it).

The database is the background tests' Django project's (tests/background/django_project, on
the path): ``BG_DATABASE`` is ``sqlite`` (files in ``BG_SQLITE_DIR``) or a PostgreSQL URL,
and the test database's name has ``BG_SUFFIX`` in it, so parallel runs do not collide.
``ASYNC_MIDDLEWARE``: ``plain`` (none), or ``sync-atomic``: a sync-only middleware that runs
``/atomic/`` requests in a transaction (Django then runs every async view inside
``async_to_sync()``, from that middleware's thread).
"""

from __future__ import annotations

import os

from bgsite import settings as _background

SECRET_KEY = "async-views-tests-only"
DEBUG = False
ALLOWED_HOSTS = ["testserver"]
ROOT_URLCONF = "asyncsite.urls"
INSTALLED_APPS = ["broadcasting.contrib.django", "orders"]  # the outbox table, and ours
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LOGGING_CONFIG = None
DATABASES = _background.DATABASES

MIDDLEWARE: list[str] = []
if os.environ.get("ASYNC_MIDDLEWARE", "plain") == "sync-atomic":
    MIDDLEWARE = ["orders.middleware.AtomicPaths"]
