"""Async Django views that save a model and publish after commit (issue 19's Django proof,
for async views): the project in tests/web/django_async, its tests run by pytest-django
with Django's ``AsyncClient``, a real soketi and a real WebSocket subscriber.

Django's transactions do not work in async code; its documentation asks for the part that
needs one to be a synchronous function called with ``sync_to_async()``. The project's views
do that and publish inside it, with ``broadcast.channel()`` or with async code awaited through
``async_to_sync()``; and a sync middleware runs some requests in one transaction around an
async view. In each case a commit sends the publish once, and a rollback never does.

Each stack runs in a process of its own (Django's settings are per process; tests/web
configures Django for itself in this one), on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
PROJECT = HERE / "django_async"
BG_PROJECT = ROOT / "tests" / "background" / "django_project"
SERVERS = ROOT / "tests" / "servers"
for _folder in (SERVERS, ROOT / "tests" / "background"):
    if str(_folder) not in sys.path:
        sys.path.insert(0, str(_folder))

from bg_support import postgres_url  # noqa: E402
from soketi_server import SoketiServer  # noqa: E402

pytestmark = pytest.mark.soketi
TIMEOUT = 240
#: the inner tests each stack runs (the middleware's only with the middleware)
EXPECTED = {"plain": 9, "sync-atomic": 13}


@pytest.mark.parametrize("stack", ["plain", "sync-atomic"])
@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_async_views_publish_after_commit(
    soketi: SoketiServer, tmp_path: Path, database: str, stack: str
) -> None:
    if database == "postgresql":
        database = postgres_url().replace("+psycopg", "")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "DJANGO_"))}
    env.update(
        {
            "BG_DATABASE": database,  # the background project's database settings
            "BG_SQLITE_DIR": str(tmp_path),
            "BG_SUFFIX": uuid.uuid4().hex[:12],
            "ASYNC_MIDDLEWARE": stack,
            "ASYNC_PUSHER": json.dumps(soketi.driver_options()),
            "ASYNC_WS_URL": soketi.ws_url(),
            "PYTHONPATH": os.pathsep.join([str(PROJECT), str(BG_PROJECT), str(SERVERS)]),
            "PYTHONDONTWRITEBYTECODE": "1",
        }
    )
    argv = [sys.executable, "-m", "pytest", "-q", "pytest_async_views.py"]
    if stack == "plain":
        argv += ["-k", "not middlewares"]
    done = subprocess.run(
        argv, cwd=PROJECT, env=env, capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-6000:]
    assert re.search(rf"\b{EXPECTED[stack]} passed\b", output), output[-3000:]
    # nothing skipped, and no warning (PostgreSQL refuses to drop a test database that a
    # view's thread still has a connection to)
    assert not re.search(r"\b(failed|skipped|errors?|warnings?)\b", output), output[-3000:]
