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


def _python(script: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``script`` run by a fresh Python, with no Django settings module named."""
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    return subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )


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
    done = _python(script)
    assert done.returncode == 0, done.stderr
    assert "names a Django database, but Django's settings are not configured" in done.stdout


def test_an_outbox_alias_django_does_not_know_is_a_configuration_error(tmp_path: Path) -> None:
    """``OUTBOX = {"django": "other"}`` with no such alias escaped as Django's own
    ConnectionDoesNotExist (a traceback from ``manage.py broadcasting send``), and outside a
    Django project as ImproperlyConfigured. Each is now the ConfigurationError that
    ``manage.py check`` (broadcasting.E001) words the same way."""
    script = f"""
from broadcasting import Broadcast, ConfigurationError
b = Broadcast({{"DRIVER": "memory", "OUTBOX": {{"django": "default"}}}})
try:
    b.channel("x", {{}}, send="outbox")
except ConfigurationError as exc:
    print("unconfigured:", exc)
import django
from django.conf import settings
settings.configure(DATABASES={{"default": {{"ENGINE": "django.db.backends.sqlite3",
                                            "NAME": {str(tmp_path / "app.sqlite3")!r}}}}})
django.setup()
b = Broadcast({{"DRIVER": "memory", "OUTBOX": {{"django": "other"}}}})
try:
    b.channel("x", {{}}, send="outbox")
except ConfigurationError as exc:
    print("unknown:", exc)
"""
    done = _python(script)
    assert done.returncode == 0, done.stderr
    assert "unconfigured: " in done.stdout and "settings are not configured here" in done.stdout
    assert "unknown: " in done.stdout
    assert "'django' names 'other', which is not in DATABASES" in done.stdout


def test_a_child_forked_while_a_thread_builds_the_project_broadcast_can_use_it(
    tmp_path: Path,
) -> None:
    """A parent thread held SettingsBroadcast's build lock (building or resetting it, as
    override_settings does) at the moment of fork: in the child, where that thread does not
    exist, every use of ``broadcast`` waited for good. The child now gets a fresh lock (a
    thread holds the lock on purpose here; SIGALRM ends a child that would hang)."""
    script = f"""
import os, signal, threading, time
import django
from django.conf import settings
settings.configure(
    DATABASES={{"default": {{"ENGINE": "django.db.backends.sqlite3",
                             "NAME": {str(tmp_path / "app.sqlite3")!r}}}}},
    BROADCASTING={{"DRIVER": "memory"}},
)
django.setup()
from broadcasting.contrib.django import broadcast
broadcast.channel("orders", {{"id": 0}}, "x")  # built
broadcast.reset()  # the next use builds again, under the lock
held, release = threading.Event(), threading.Event()
def holder():
    with broadcast._build_lock:
        held.set()
        release.wait(10)
threading.Thread(target=holder, daemon=True).start()
held.wait()
pid = os.fork()
if pid == 0:
    signal.alarm(5)
    broadcast.channel("orders", {{"id": 1}}, "x")
    os._exit(0)
_, status = os.waitpid(pid, 0)
release.set()
print("child exit", os.waitstatus_to_exitcode(status))
"""
    done = _python(script)
    assert done.returncode == 0, done.stderr
    assert "child exit 0" in done.stdout, done.stdout + done.stderr


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
    done = _python(script)
    assert done.returncode == 0, done.stderr
    assert "refused:" in done.stdout
    expected = "a row joins a Django transaction only with OUTBOX = {'django': 'default'}"
    assert expected in done.stdout


OUTBOX_TESTS = Path(__file__).resolve().parents[1] / "outbox"


@pytest.mark.parametrize("database", ["postgresql", "mysql"])
def test_a_django_stores_deadlock_runs_again_only_outside_the_apps_atomic_block(
    database: str,
) -> None:
    """A store on Django's connection (``OUTBOX = {"django": "default"}``), its transaction
    made a deadlock's victim as in tests/outbox/test_store_deadlocks.py. Inside the
    application's ``atomic()`` the store's transaction is a savepoint of the application's,
    which the database rolled back whole: the error reaches the application, and nothing
    runs again. Outside, the store runs its own transaction again, and the rows are done."""
    if database == "postgresql":
        url = postgres_url().replace("+psycopg", "")  # psycopg's own
        user = url.split("://", 1)[1].split("@", 1)[0]
        django_db = {"ENGINE": "django.db.backends.postgresql", "PORT": 5432, "USER": user}
    else:  # Django's own backend: mysqlclient
        url = mysql_url()
        django_db = {"ENGINE": "django.db.backends.mysql", "PORT": 3306, "USER": "root"}
    django_db.update(NAME="test", HOST="127.0.0.1")
    table = f"outbox_dl_{uuid.uuid4().hex[:8]}"
    script = f"""
import logging, sys
sys.path.insert(0, {str(OUTBOX_TESTS)!r})
import django
from django.conf import settings
settings.configure(DATABASES={{"default": {django_db!r}}})
django.setup()
from django.db import connections, transaction
from broadcasting.outbox import DELIVERED, PENDING, Outcome, Store
from conftest import mysql_connect
from test_store_deadlocks import NOW, OWNER, Other, fill, meet, states

logging.basicConfig(level=logging.INFO, format="LOG %(message)s", stream=sys.stdout)
store = Store.from_config({{"django": "default", "table": {table!r}, "partitions": 4}})
store.create_tables()
try:
    ids = fill(store)
    other = Other({database!r}, {{"url": {url!r}, "table": {table!r}}}, mysql_connect)

    def finish(first, second, atomic):
        outcomes = [Outcome(first, DELIVERED, attempts=1), Outcome(second, DELIVERED, attempts=1)]
        try:
            if atomic:
                with transaction.atomic():
                    store.finish(OWNER, outcomes, NOW)
            else:
                store.finish(OWNER, outcomes, NOW)
        finally:
            connections.close_all()  # this thread's

    got = meet(other, ids, lambda a, b: finish(a, b, atomic=True))
    print("INSIDE", type(got.get("error")).__name__, states(store, ids[:2]) == [PENDING] * 2)
    got = meet(other, ids, lambda a, b: finish(a, b, atomic=False))
    print("OUTSIDE", got, states(store, ids[:2]) == [DELIVERED] * 2)
    other.close()
finally:
    with connections["default"].cursor() as cursor:
        for suffix in ("", "_lease", "_relay", "_lock"):
            cursor.execute("DROP TABLE IF EXISTS {table}" + suffix)
"""
    done = _python(script, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    # inside atomic(): Django's error for the deadlock, nothing ran again, nothing changed
    inside = lines.index("INSIDE OperationalError True")
    # outside: run again once, then done
    outside = lines.index("OUTSIDE {'result': None} True")
    said = [line for line in lines if line.startswith("LOG ")]
    assert said == [f"LOG outbox {table}: finish was a deadlock's victim (try 1 of 5); "
                    "running it again"], done.stdout  # fmt: skip
    assert inside < lines.index(said[0]) < outside
