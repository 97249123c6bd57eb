"""Review of the Django app: settings a test changes with ``override_settings`` (or
pytest-django's ``settings`` fixture) take effect, as docs/django.md says they do.

Django runs in subprocesses (as in test_review_django.py), so this process never configures it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("django")

TIMEOUT = 120

SETTINGS = """
SECRET_KEY = "s36-tests-only"
DEBUG = False
ALLOWED_HOSTS = ["testserver"]
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
ROOT_URLCONF = "s36_urls"
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "broadcasting.contrib.django",
    "s36_app",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
DATABASES = {}
BROADCASTING = {"DRIVER": "memory"}
"""

URLS = """
from django.urls import include, path

from broadcasting.contrib.django.urls import url_patterns

urlpatterns = [
    path("broadcasting/", include("broadcasting.contrib.django.urls")),
    path("again/", include((url_patterns(), "again"))),
]
"""

APP = """
from broadcasting.contrib.django import broadcast


def ann(request):
    return {"id": "ann"}


@broadcast.rule("orders")
def anyone(user):
    return True
"""

SCRIPT = """
import asyncio
import json

import django

django.setup()
from django.test import Client, override_settings
from django.urls import resolve


def statuses():
    fields = {"socket_id": "1234.5678", "channel_name": "private-orders"}
    client = Client(enforce_csrf_checks=True, raise_request_exception=False)
    answers = [client.post(f"/{prefix}/auth", fields) for prefix in ("broadcasting", "again")]
    return [
        "csrf" if b"CSRF verification failed" in answer.content else answer.status_code
        for answer in answers
    ]


seen = {"before": statuses()}
with override_settings(BROADCASTING_ENDPOINTS={"user": "s36_app.broadcasting.ann"}):
    seen["user overridden"] = statuses()
    with override_settings(
        BROADCASTING_ENDPOINTS={"user": "s36_app.broadcasting.ann", "csrf": True}
    ):
        seen["csrf kept"] = statuses()
with override_settings(BROADCASTING_ENDPOINTS={"async_views": True}):
    seen["async views"] = [
        asyncio.iscoroutinefunction(resolve(f"/{prefix}/auth").func)
        for prefix in ("broadcasting", "again")
    ]
with override_settings(BROADCASTING_ENDPOINTS={"user": "no_such_module.user"}):
    seen["bad setting"] = statuses()
seen["after"] = statuses()
print(json.dumps(seen))
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "s36_settings.py").write_text(SETTINGS, "utf-8")
    (tmp_path / "s36_urls.py").write_text(URLS, "utf-8")
    (tmp_path / "s36_app").mkdir()
    (tmp_path / "s36_app" / "__init__.py").write_text("", "utf-8")
    (tmp_path / "s36_app" / "broadcasting.py").write_text(APP, "utf-8")
    (tmp_path / "s36_script.py").write_text(SCRIPT, "utf-8")
    return tmp_path


def run(project: Path, *argv: str, **environ: str) -> subprocess.CompletedProcess[str]:
    dropped = ("PYTEST_", "DJANGO_", "BROADCAST", "COV_", "COVERAGE_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(dropped)}
    env.update(environ)
    env["DJANGO_SETTINGS_MODULE"] = "s36_settings"
    env["PYTHONPATH"] = str(project)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return subprocess.run(
        [sys.executable, *argv],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def test_override_settings_of_the_endpoints_setting_reaches_the_mounted_endpoints(
    project: Path,
) -> None:
    """``BROADCASTING_ENDPOINTS`` was read once, when the URLconf was imported: a test that
    overrode it (another ``user`` function, ``csrf``) was silently served the endpoints of the
    settings module. The included URLs and lists from ``url_patterns()`` follow it now; a bad
    override answers 500 (ImproperlyConfigured), as a bad setting does."""
    done = run(project, "s36_script.py")
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.splitlines()[-1])
    assert seen == {
        "before": [403, 403],  # a guest
        "user overridden": [200, 200],
        "csrf kept": ["csrf", "csrf"],  # no CSRF token sent
        "async views": [True, True],
        "bad setting": [500, 500],
        "after": [403, 403],
    }, done.stderr[-3000:]


@pytest.mark.parametrize("value", ["float('nan')", "float('inf')"])
def test_a_client_setting_json_cannot_hold_is_reported_by_the_check(
    project: Path, value: str
) -> None:
    """``broadcasting.E005``: ``BROADCASTING_CLIENT`` is not a dict that JSON can hold. NaN and
    infinity passed it (Python's json writes them, as ``NaN``, which no browser's JSON.parse
    reads): the page's config then broke every client at run time instead."""
    (project / "s36_nan.py").write_text(
        f"from s36_settings import *\nBROADCASTING_CLIENT = {{'wsPort': {value}}}\n", "utf-8"
    )
    done = run(project, "-m", "django", "check", "--settings", "s36_nan")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "broadcasting.E005" in done.stderr and "Traceback" not in done.stderr, done.stderr


@pytest.mark.parametrize(
    ("driver", "expected", "unexpected"),
    [
        ("", "broadcasting.W001", "broadcasting.E"),
        ("log", "broadcasting.W001", "broadcasting.E"),
        ("null", "no issues", "broadcasting.W001"),
        ("pushr", "broadcasting.E002", "broadcasting.W001"),
        ("pusher", "broadcasting.E003", "broadcasting.W001"),
    ],
)
def test_an_unset_setting_is_checked_with_the_driver_broadcast_driver_names(
    project: Path, driver: str, expected: str, unexpected: str
) -> None:
    """Without ``BROADCASTING`` the project's Broadcast takes ``$BROADCAST_DRIVER``
    (docs/configuration.md). The check said every publish went to the ``log`` driver
    whatever it named, and never checked that driver: a typo (``pushr``) passed."""
    (project / "s36_unset.py").write_text("from s36_settings import *\ndel BROADCASTING\n", "utf-8")
    environ = {"BROADCAST_DRIVER": driver} if driver else {}
    done = run(project, "-m", "django", "check", "--settings", "s36_unset", **environ)
    output = done.stdout + done.stderr
    assert expected in output and unexpected not in output, output
    assert "Traceback" not in output, output
