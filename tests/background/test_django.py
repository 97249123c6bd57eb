"""A Django view that saves a model and publishes after commit, with Django's test client:
Django's runner (TestCase.captureOnCommitCallbacks, TransactionTestCase) on SQLite,
PostgreSQL and MariaDB, and pytest-django (``transaction=True``, captured callbacks) on SQLite.

The project (tests/background/django_project) runs in processes of its own: Django's
settings are per process, and tests/web configures Django for itself in this one.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from bg_support import mysql_url, postgres_url

PROJECT = Path(__file__).resolve().parent / "django_project"
TIMEOUT = 180
#: What the project's test files define (each must have run and passed).
RUNNER_TESTS = 14
PYTEST_TESTS = 4


def _run(args: list[str], database: str, tmp_path: Path) -> str:
    env = {
        **os.environ,
        "BG_DATABASE": database,
        "BG_SQLITE_DIR": str(tmp_path),
        "BG_SUFFIX": uuid.uuid4().hex[:12],
        "PYTHONPATH": os.pathsep.join([str(PROJECT), os.environ.get("PYTHONPATH", "")]),
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)
    done = subprocess.run(
        [sys.executable, *args],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    return output


@pytest.mark.parametrize("database", ["sqlite", "postgresql", "mysql"])
def test_djangos_runner(database: str, tmp_path: Path) -> None:
    if database == "postgresql":
        database = postgres_url().replace("+psycopg", "")
    elif database == "mysql":  # Django's own backend: mysqlclient
        database = mysql_url().replace("+pymysql", "")
    output = _run(["manage.py", "test", "shop", "--noinput"], database, tmp_path)
    assert re.search(rf"^Ran {RUNNER_TESTS} tests in ", output, re.M), output
    assert re.search(r"^OK$", output, re.M), output


def test_pytest_django(tmp_path: Path) -> None:
    output = _run(
        ["-m", "pytest", "-c", "pytest.ini", "-q", "shop/django_checks.py"], "sqlite", tmp_path
    )
    assert re.search(rf"\b{PYTEST_TESTS} passed\b", output), output
    assert " failed" not in output and " error" not in output, output


def test_an_alias_without_django_settings_is_an_input_error() -> None:
    """A fresh process: Django is installed, its settings are not configured."""
    script = (
        "from broadcasting import Broadcast, InputError\n"
        "from broadcasting._plugins import register_everywhere\n"
        "import broadcasting.contrib.django.transaction as plugin\n"
        "register_everywhere(plugin)\n"
        "b = Broadcast({'DRIVER': 'memory'})\n"
        "assert not b.channel('x', {}, send='after_commit').pending  # no ORM: at once\n"
        "try:\n"
        "    b.channel('x', {}, send='after_commit', transaction='default')\n"
        "except InputError as exc:\n"
        "    print(exc)\n"
        "import sys\n"
        "assert 'django.db' not in sys.modules\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "names a Django database, but Django's settings are not configured" in done.stdout


def test_outside_atomic_django_is_not_joined(tmp_path: Path) -> None:
    """A fresh process with Django's ORM loaded and configured: outside ``atomic()`` there is
    nothing to join, so an outbox write goes to the configured outbox (here a SQLite file,
    not Django's database) on its own; inside ``atomic()`` on Django's database, a
    non-Django outbox is refused with the reason instead of losing the atomicity."""
    script = f"""
import django
from django.conf import settings
settings.configure(DATABASES={{"default": {{"ENGINE": "django.db.backends.sqlite3",
                                            "NAME": {str(tmp_path / "app.sqlite3")!r}}}}})
django.setup()
from django.db import transaction
from broadcasting import Broadcast, ConfigurationError
from broadcasting.outbox import store_for
outbox = {{"url": "sqlite:///{tmp_path / "outbox.sqlite3"}"}}
b = Broadcast({{"DRIVER": "memory", "OUTBOX": outbox}})
assert b.channel("x", {{}}, send="outbox").pending
assert store_for(b).stats(0).backlog["pending"] == 1
assert not b.channel("x", {{}}, send="after_commit").pending  # no transaction: sent at once
with transaction.atomic():
    assert b.channel("x", {{}}, send="after_commit").pending  # Django's, joined
    try:
        b.channel("x", {{}}, send="outbox")
    except ConfigurationError as exc:
        print("refused:", exc)
"""
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"},
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "refused:" in done.stdout
    expected = "a row joins a Django transaction only with OUTBOX = {'django': 'default'}"
    assert expected in done.stdout
