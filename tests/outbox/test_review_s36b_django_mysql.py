"""Review (session 36b): the Django migration's MySQL/MariaDB tables are utf8mb4_bin, as the
URL store's (``Store.create_tables()``) are, whatever the database's default character set and
collation: in a latin1 database a message beyond Latin-1 failed at the write, and under a
case-insensitive collation relays named ``RELAY-A`` and ``relay-a`` shared their leases.

Against the real MariaDB, in a latin1 database of the test's own (dropped after), migrated
with Django's ``migrate`` command in a process of its own (Django's settings are per
process): once step by step (a database that had applied the earlier migrations), once from
nothing (a new install)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

SCRIPT = r"""
import json, sys, time
import django
from django.conf import settings

db = json.loads(sys.argv[1])
settings.configure(
    INSTALLED_APPS=["broadcasting.contrib.django"], DATABASES={"default": db}, USE_TZ=True
)
django.setup()
from django.core.management import call_command
from django.db import connection

from broadcasting import Broadcast
from broadcasting.outbox._store import Store

TABLES = ("broadcasting_outbox", "broadcasting_outbox_lease", "broadcasting_outbox_relay")


def text_columns():
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT table_name, column_name, character_set_name, collation_name "
            "FROM information_schema.columns WHERE table_schema = DATABASE() "
            "AND character_set_name IS NOT NULL ORDER BY table_name, column_name"
        )
        return [list(row) for row in cursor.fetchall() if row[0] in TABLES]


def table_defaults():
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT table_name, table_collation FROM information_schema.tables "
            "WHERE table_schema = DATABASE() ORDER BY table_name"
        )
        return [list(row) for row in cursor.fetchall() if row[0] in TABLES]


def works():
    broadcast = Broadcast({"DRIVER": "memory", "OUTBOX": {"django": "default", "partitions": 4}})
    try:
        try:
            broadcast.channel("orders", "茶 ☕ 😀", "tea", send="outbox")
        except Exception as exc:
            written = f"{type(exc).__name__}: {exc}"
        else:
            with connection.cursor() as cursor:
                cursor.execute("SELECT body FROM broadcasting_outbox")
                written = [row[0] for row in cursor.fetchall()]
    finally:
        broadcast.close()
    store = Store.from_config({"django": "default", "partitions": 4})
    now = time.time()
    lower = store.claim("relay-a", now, 30)
    upper = store.claim("RELAY-A", now, 30)
    accent = store.claim("relay-\u00e1", now, 30)
    with connection.cursor() as cursor:
        for table in TABLES:
            cursor.execute(f"DELETE FROM {table}")
    store.close()
    return {"written": written, "lower": lower, "upper": upper, "accent": accent}


out = {}
if sys.argv[2] == "upgrade":  # the migrations a database may have applied before
    call_command("migrate", "broadcasting", "0002", verbosity=0)
    out["before"] = text_columns()
call_command("migrate", "broadcasting", verbosity=0)
out["columns"] = text_columns()
out["tables"] = table_defaults()
out["works"] = works()
call_command("migrate", "broadcasting", "zero", verbosity=0)  # reversible
with connection.cursor() as cursor:
    cursor.execute("SHOW TABLES")
    out["left"] = [row[0] for row in cursor.fetchall()]
print(json.dumps(out))
"""


@pytest.fixture
def latin1_database(mysql_url: str, adapters: Any) -> Iterator[dict[str, Any]]:
    name = f"dj_latin1_{uuid.uuid4().hex[:10]}"
    adapters.mysql_admin(f"CREATE DATABASE `{name}` CHARACTER SET latin1 COLLATE latin1_swedish_ci")
    try:
        yield {
            "ENGINE": "django.db.backends.mysql",  # mysqlclient, Django's own MySQL driver
            "NAME": name,
            "USER": "root",
            "HOST": "127.0.0.1",
            "PORT": "3306",
        }
    finally:
        adapters.mysql_admin(f"DROP DATABASE `{name}`")


@pytest.mark.parametrize("path", ["upgrade", "new"])
def test_the_django_migration_makes_utf8mb4_bin_tables_on_mysql(
    path: str, latin1_database: dict[str, Any]
) -> None:
    if not os.environ.get("CI"):
        pytest.importorskip("django")
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, json.dumps(latin1_database), path],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    if path == "upgrade":  # what the first two migrations made: the database's latin1
        assert {tuple(c[2:]) for c in out["before"]} == {("latin1", "latin1_swedish_ci")}
    owners = [c for c in out["columns"] if c[1] == "owner"]
    assert len(owners) == 2
    assert len(out["columns"]) == 10  # the outbox's 8 text columns, the 2 owners
    assert {tuple(c[2:]) for c in out["columns"]} == {("utf8mb4", "utf8mb4_bin")}
    assert {t[1] for t in out["tables"]} == {"utf8mb4_bin"}
    assert out["works"]["written"] == ["茶 ☕ 😀"]
    # relays whose names differ in case or accent are distinct: the first holds every partition
    assert out["works"]["lower"] == [0, 1, 2, 3]
    assert out["works"]["upper"] == []
    assert out["works"]["accent"] == []
    assert out["left"] == ["django_migrations"]


ROUTED = r"""
import json, sys
import django
from django.conf import settings


class Elsewhere:  # the outbox's models live in another database, routed by model
    def allow_migrate(self, db, app_label, model_name=None, **hints):
        return False if app_label == "broadcasting" and model_name else None


settings.configure(
    INSTALLED_APPS=["broadcasting.contrib.django"],
    DATABASES={"default": json.loads(sys.argv[1])},
    DATABASE_ROUTERS=[Elsewhere()],
    USE_TZ=True,
)
django.setup()
from django.core.management import call_command
from django.db import connection

call_command("migrate", "broadcasting", verbosity=0)
print(json.dumps(sorted(connection.introspection.table_names())))
call_command("migrate", "broadcasting", "zero", verbosity=0)
"""


def test_the_conversion_skips_outbox_tables_a_router_kept_out(
    latin1_database: dict[str, Any],
) -> None:
    """A router that keeps the outbox's models out of a database (by model) leaves the
    migration's conversion nothing to convert there: it is not an error."""
    if not os.environ.get("CI"):
        pytest.importorskip("django")
    done = subprocess.run(
        [sys.executable, "-c", ROUTED, json.dumps(latin1_database)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    tables = json.loads(done.stdout.strip().splitlines()[-1])
    assert "broadcasting_outbox" not in tables
