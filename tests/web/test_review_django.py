"""The ``broadcasting.contrib.django`` app: its system checks, its management commands and its
URLs, in a Django project of each test's own.

Django runs in subprocesses (``python -m django``, as ``manage.py`` runs commands), so this
process never configures it and nothing reaches the other tests. The settings come from JSON
in the environment (``RV_BROADCASTING``, ``RV_ENDPOINTS``, ``RV_DATABASES``).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("django")

SERVERS = Path(__file__).resolve().parents[1] / "servers"
if str(SERVERS) not in sys.path:
    sys.path.insert(0, str(SERVERS))

from soketi_pytest import unavailable  # noqa: E402

from broadcasting import Broadcast  # noqa: E402
from broadcasting.outbox._store import Store  # noqa: E402

TIMEOUT = 120
SECRET = "hush-hush-0123"

SETTINGS = """
import json, os

SECRET_KEY = "review-tests-only"
DEBUG = False
ALLOWED_HOSTS = ["testserver"]
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
ROOT_URLCONF = "rv_urls"
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "broadcasting.contrib.django",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
DATABASES = json.loads(os.environ.get("RV_DATABASES", "{}"))
BROADCASTING = json.loads(os.environ.get("RV_BROADCASTING", '{"DRIVER": "memory"}'))
if "RV_ENDPOINTS" in os.environ:
    BROADCASTING_ENDPOINTS = json.loads(os.environ["RV_ENDPOINTS"])
"""

URLS = """
from django.urls import include, path

urlpatterns = [path("broadcasting/", include("broadcasting.contrib.django.urls"))]
"""

CALL = """
import json, sys

import django

django.setup()
from django.core.management import CommandError, call_command

try:
    call_command("broadcasting", *sys.argv[1:])
    outcome = "returned"
except CommandError as exc:
    outcome = f"CommandError {exc.returncode}"
except SystemExit as exc:
    outcome = f"SystemExit {exc.code}"
print(json.dumps(outcome))
"""

REQUEST = """
import sys

import django

django.setup()
from django.core.signals import got_request_exception
from django.test import Client

got_request_exception.connect(
    lambda **kw: print(repr(sys.exc_info()[1]), file=sys.stderr), weak=False
)
answer = Client(raise_request_exception=False).post(
    "/broadcasting/auth", {"socket_id": "1234.5678", "channel_name": "private-x"}
)
print(answer.status_code)
"""


def closed_port() -> int:
    """A local TCP port nothing listens on (bound, then let go)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "rv_settings.py").write_text(SETTINGS, "utf-8")
    (tmp_path / "rv_urls.py").write_text(URLS, "utf-8")
    (tmp_path / "rv_call.py").write_text(CALL, "utf-8")
    (tmp_path / "rv_request.py").write_text(REQUEST, "utf-8")
    return tmp_path


def run(
    project: Path,
    *argv: str,
    config: object = None,
    endpoints: object = None,
    databases: object = None,
    script: str | None = None,
) -> subprocess.CompletedProcess[str]:
    dropped = ("PYTEST_", "DJANGO_", "BROADCAST", "RV_", "COV_", "COVERAGE_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(dropped)}
    env["DJANGO_SETTINGS_MODULE"] = "rv_settings"
    env["PYTHONPATH"] = str(project)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    if config is not None:
        env["RV_BROADCASTING"] = json.dumps(config)
    if endpoints is not None:
        env["RV_ENDPOINTS"] = json.dumps(endpoints)
    if databases is not None:
        env["RV_DATABASES"] = json.dumps(databases)
    command = [sys.executable, script] if script else [sys.executable, "-m", "django"]
    return subprocess.run(
        [*command, *argv],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def down_postgresql() -> dict[str, object]:
    """A PostgreSQL database that cannot be reached (nothing listens on its port)."""
    return {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": "test",
            "USER": "postgres",
            "PASSWORD": SECRET,
            "HOST": "127.0.0.1",
            "PORT": str(closed_port()),
        }
    }


# -- manage.py broadcasting_relay ---------------------------------------------------------


def test_the_relay_command_reports_a_database_that_is_down_in_one_line(project: Path) -> None:
    """``broadcasting relay`` reports a failing outbox database in one line (status 1); the
    Django command ended in a traceback."""
    pytest.importorskip("psycopg")
    config = {"DRIVER": "memory", "OUTBOX": {"django": "default"}}
    for argv in (["--once"], ["--stats"]):
        done = run(project, "broadcasting_relay", *argv, config=config, databases=down_postgresql())
        assert done.returncode == 1, done.stderr
        assert "Traceback" not in done.stderr, done.stderr
        # the database's own message, which says why, less the password (settings.DATABASES)
        assert "failed: OperationalError: connection" in done.stderr, done.stderr
        assert "Connection refused" in done.stderr, done.stderr
        assert SECRET not in done.stdout + done.stderr


def test_the_relay_command_reports_missing_tables_in_one_line(project: Path) -> None:
    """The tables not made yet (no ``migrate``): one line, status 1, no traceback."""
    sqlite = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(project / "db")}}
    config = {"DRIVER": "memory", "OUTBOX": {"django": "default"}}
    done = run(project, "broadcasting_relay", "--once", config=config, databases=sqlite)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert "OperationalError: no such table: broadcasting_outbox" in done.stderr, done.stderr
    assert "migrate" in done.stderr, done.stderr


# -- system checks ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("endpoints", "named"),
    [
        ({"usr": "x"}, "'usr'"),
        ({"user": "no_such_module.user"}, "no_such_module"),
        ({"csrf": "yes"}, "'csrf'"),
        ({"driver": "pushr"}, "'pushr'"),  # a name no driver has: every request a 500
    ],
)
def test_a_bad_endpoints_setting_is_reported_with_the_urls_mounted(
    project: Path, endpoints: object, named: str
) -> None:
    """docs/django.md: ``broadcasting.E004``. With the URLs mounted (what the setting is for),
    Django's URL checks imported them and ``manage.py check`` ended in a TypeError."""
    done = run(project, "check", endpoints=endpoints)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert "broadcasting.E004" in done.stderr and named in done.stderr, done.stderr


def test_a_bad_endpoints_setting_is_reported_with_url_patterns_called_by_the_project(
    project: Path,
) -> None:
    """docs/django.md's second mount calls ``url_patterns(async_views=True)`` in the project's
    own urls.py: a bad setting must reach E004 there too, not a traceback."""
    (project / "rv_urls.py").write_text(
        "from django.urls import include, path\n"
        "from broadcasting.contrib.django.urls import url_patterns\n"
        "urlpatterns = [path('broadcasting/', include((url_patterns(async_views=True), 'a')))]\n",
        "utf-8",
    )
    done = run(project, "check", endpoints={"usr": "x"})
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert "broadcasting.E004" in done.stderr and "'usr'" in done.stderr, done.stderr


def test_with_a_bad_endpoints_setting_the_endpoints_answer_500(project: Path) -> None:
    """Where the checks do not run (a WSGI server), the endpoints fail, not silently 404."""
    done = run(project, endpoints={"usr": "x"}, script="rv_request.py")
    assert done.stdout.strip() == "500", done.stdout + done.stderr
    assert "ImproperlyConfigured(\"BROADCASTING_ENDPOINTS has an unknown key 'usr'" in done.stderr
    good = run(project, script="rv_request.py")
    assert good.stdout.strip() == "403", good.stdout + good.stderr  # a guest: refused


@pytest.mark.parametrize(
    "ably",
    [{"key": None}, {"secret": None}],
)
def test_an_unset_ably_key_is_left_to_check_deploy(project: Path, ably: object) -> None:
    """docs/django.md: an option left ``None`` (an unset variable) is reported by ``check
    --deploy`` only. Ably's key may be given as ``key`` (docs/configuration.md), and its error
    names ``secret``: ``manage.py check`` failed, so did ``makemigrations`` and the tests."""
    config = {"DRIVER": "ably", "DRIVERS": {"ably": ably}}
    done = run(project, "check", config=config)
    assert done.returncode == 0, done.stderr
    assert "broadcasting.E003" not in done.stderr
    deploy = run(project, "check", "--deploy", "--fail-level", "ERROR", config=config)
    assert deploy.returncode == 1
    assert "broadcasting.E003" in deploy.stderr, deploy.stderr


def test_a_wrong_option_beside_an_unset_one_is_still_reported(project: Path) -> None:
    config = {
        "DRIVER": "pusher",
        "DRIVERS": {"pusher": {"app_id": "1", "key": "k", "secret": SECRET, "cluster": 5}},
    }
    done = run(project, "check", config=config)
    assert done.returncode == 1
    assert "broadcasting.E003" in done.stderr and "'cluster'" in done.stderr, done.stderr
    assert SECRET not in done.stderr + done.stdout


@pytest.mark.parametrize(
    ("outbox", "named"),
    [
        ({"django": "default", "tabel": "x"}, "'tabel'"),
        ({"django": "other"}, "'other'"),
        ({"django": "default", "partitions": 0}, "'partitions'"),
        ({"django": "default", "url": "sqlite:///o.sqlite3"}, "either 'url' or 'django'"),
        ({"table": "bad name;"}, "OUTBOX"),
    ],
)
def test_a_bad_outbox_stops_django_at_start_up(project: Path, outbox: object, named: str) -> None:
    """An OUTBOX every ``send='outbox'`` publish refuses passed ``manage.py check``."""
    config = {"DRIVER": "memory", "OUTBOX": outbox}
    databases = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(project / "db")}}
    done = run(project, "check", config=config, databases=databases)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert "broadcasting.E001" in done.stderr and named in done.stderr, done.stderr


def test_a_good_outbox_is_checked_without_its_database(project: Path) -> None:
    """No check connects: an OUTBOX in a database that is down passes ``manage.py check``."""
    pytest.importorskip("psycopg")
    config = {"DRIVER": "memory", "OUTBOX": {"django": "default", "partitions": 4}}
    done = run(project, "check", config=config, databases=down_postgresql())
    assert done.returncode == 0, done.stderr
    assert "no issues" in done.stdout, done.stdout + done.stderr


# -- call_command("broadcasting", ...) ----------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "outcome"),
    [
        (["no-such-command"], "CommandError 2"),
        (["send"], "CommandError 2"),
        (["send", '{"id": 1}', "--channel", "orders"], "returned"),
        (["channels", "--driver", "no-such-driver"], "CommandError 1"),
    ],
)
def test_call_command_raises_command_error_on_bad_arguments(
    project: Path, argv: list[str], outcome: str
) -> None:
    """docs/django.md: ``call_command("broadcasting", ...)``; Django's commands raise
    CommandError for bad arguments when called from code. This one raised SystemExit."""
    done = run(project, *argv, script="rv_call.py")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == outcome, done.stdout + done.stderr


# -- the outbox's migration ---------------------------------------------------------------


@pytest.fixture
def pg_database() -> Iterator[str]:
    """A PostgreSQL database of the test's own (dropped afterwards)."""
    psycopg = pytest.importorskip("psycopg")
    name = f"broadcasting_review_{os.getpid()}_{secrets.token_hex(4)}"
    admin = "postgresql://postgres@127.0.0.1:5432/test"
    try:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError:  # fails instead under CI, where PostgreSQL must run
        unavailable("PostgreSQL", "PostgreSQL is not running on 127.0.0.1:5432")
    try:
        yield name
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def pg_columns(url: str, table: str) -> list[tuple[str, str, str]]:
    import psycopg

    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT column_name, data_type, is_nullable FROM information_schema.columns "
            "WHERE table_name = %s ORDER BY column_name",
            (table,),
        ).fetchall()
    return [(str(a), str(b), str(c)) for a, b, c in rows]


def sqlite_columns(path: Path, table: str) -> list[tuple[str, str, int]]:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        rows = conn.execute(f'PRAGMA table_info("{table}")').fetchall()
    return sorted(
        (str(name), str(kind).upper(), int(notnull)) for _, name, kind, notnull, *_ in rows
    )


def test_the_migration_makes_the_stores_tables_on_postgresql(
    project: Path, pg_database: str
) -> None:
    """``migrate`` makes what ``broadcasting outbox init`` makes (columns, types, NULLs),
    ``makemigrations --check`` finds nothing to change, and the relay command delivers rows
    written to the migrated table."""
    databases = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": pg_database,
            "USER": "postgres",
            "HOST": "127.0.0.1",
            "PORT": "5432",
        }
    }
    outbox = {"django": "default", "partitions": 2}
    config = {"DRIVER": "memory", "OUTBOX": outbox}
    unchanged = run(
        project, "makemigrations", "--check", "--dry-run", config=config, databases=databases
    )
    assert unchanged.returncode == 0, unchanged.stdout + unchanged.stderr
    migrated = run(project, "migrate", "broadcasting", config=config, databases=databases)
    assert migrated.returncode == 0, migrated.stderr
    url = f"postgresql://postgres@127.0.0.1:5432/{pg_database}"
    store = Store.from_config({"url": url, "table": "init_outbox"})
    store.create_tables()
    store.close()
    for made, inited in (
        ("broadcasting_outbox", "init_outbox"),
        ("broadcasting_outbox_lease", "init_outbox_lease"),
        ("broadcasting_outbox_relay", "init_outbox_relay"),
    ):
        assert pg_columns(url, made) == pg_columns(url, inited) != []
    with Broadcast({"DRIVER": "memory", "OUTBOX": {"url": url, "partitions": 2}}) as broadcast:
        for n in range(3):
            broadcast.channel("orders", {"n": n}, "tick", send="outbox")
    done = run(
        project, "broadcasting_relay", "--once", "--json", config=config, databases=databases
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["delivered"] == 3


def test_the_migration_makes_the_stores_tables_on_sqlite(project: Path) -> None:
    path = project / "db.sqlite3"
    databases = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(path)}}
    config = {"DRIVER": "memory", "OUTBOX": {"django": "default", "partitions": 2}}
    migrated = run(project, "migrate", "broadcasting", config=config, databases=databases)
    assert migrated.returncode == 0, migrated.stderr
    store = Store.from_config({"url": f"sqlite:///{path}", "table": "init_outbox"})
    store.create_tables()
    store.close()
    for made, inited in (
        ("broadcasting_outbox", "init_outbox"),
        ("broadcasting_outbox_lease", "init_outbox_lease"),
        ("broadcasting_outbox_relay", "init_outbox_relay"),
    ):
        assert sqlite_columns(path, made) == sqlite_columns(path, inited) != []
    with Broadcast(
        {"DRIVER": "memory", "OUTBOX": {"url": f"sqlite:///{path}", "partitions": 2}}
    ) as b:
        b.channel("orders", {"n": 1}, "tick", send="outbox")
    done = run(
        project, "broadcasting_relay", "--once", "--json", config=config, databases=databases
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["delivered"] == 1


ASYNC_URLS = """
from django.db import connection
from django.urls import include, path

from broadcasting import Broadcast  # noqa: E402
from broadcasting.web.django import broadcasting_urls

broadcast = Broadcast({"DRIVER": "memory"})


@broadcast.rule("orders.{order_id}")
def order_owner(user, order_id):
    with connection.cursor() as cursor:  # the ORM: refused on an event loop
        cursor.execute("SELECT 1")
    return True


def guest(request):
    return {"id": "7"}


urlpatterns = [
    path("", include(broadcasting_urls(broadcast, user=guest, async_views=True))),
]
"""

ASYNC_REQUEST = """
import asyncio, sys

import django

django.setup()
from django.core.signals import got_request_exception
from django.test import AsyncClient

got_request_exception.connect(
    lambda **kw: print(repr(sys.exc_info()[1]), file=sys.stderr), weak=False
)


async def main():
    answer = await AsyncClient(raise_request_exception=False).post(
        "/broadcasting/auth", {"socket_id": "1234.5678", "channel_name": "private-orders.1"}
    )
    print(answer.status_code)


asyncio.run(main())
"""


def test_an_async_view_runs_a_sync_rule_that_uses_the_orm_in_a_thread(
    project: Path, tmp_path: Path
) -> None:
    """docs/django.md: with ``async_views`` a sync user function may use the ORM (it runs
    through ``sync_to_async``). With ``broadcasting.web.django.broadcasting_urls`` and a plain
    Broadcast, a sync channel rule ran on the event loop, where Django refuses the ORM
    (``SynchronousOnlyOperation``): every such subscription got a 500. (The contrib app's
    project ``broadcast`` wraps its rules itself.)"""
    (project / "rv_urls.py").write_text(ASYNC_URLS, "utf-8")
    (project / "rv_async_request.py").write_text(ASYNC_REQUEST, "utf-8")
    databases = {
        "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(tmp_path / "db.sqlite3")}
    }
    done = run(project, databases=databases, script="rv_async_request.py")
    assert done.stdout.strip() == "200", done.stdout + done.stderr
    assert "SynchronousOnlyOperation" not in done.stderr, done.stderr
