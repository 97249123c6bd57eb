"""``manage.py broadcasting_relay``: the relay of the project's Broadcast, in a Django
project of the test's own (run with ``python -m django``, as manage.py runs commands)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("django")

from broadcasting import Broadcast
from broadcasting.outbox._row import DELIVERED
from broadcasting.outbox._store import Store

SETTINGS = """
SECRET_KEY = "test-only"
INSTALLED_APPS = ["broadcasting.contrib.django"]
DATABASES = {{}}
USE_TZ = True
BROADCASTING = {{"DRIVER": "memory", "DRIVERS": {{"memory": {{}}}}, "OUTBOX": {outbox!r}}}
"""


def django(project: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "relay_settings",
        "PYTHONPATH": os.pathsep.join([str(project), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.run(
        [sys.executable, "-m", "django", *argv],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_command_relays_the_projects_outbox(tmp_path: Path) -> None:
    outbox = {"url": f"sqlite:///{tmp_path / 'outbox.sqlite3'}", "partitions": 2}
    (tmp_path / "relay_settings.py").write_text(SETTINGS.format(outbox=outbox), "utf-8")
    with Broadcast({"DRIVER": "memory", "OUTBOX": outbox}) as broadcast:
        for n in range(4):
            broadcast.channel("orders", {"n": n}, "tick", send="outbox")
    done = django(tmp_path, "broadcasting_relay", "--once", "--json", "--owner", "dj")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["delivered"] == 4
    stats = django(tmp_path, "broadcasting_relay", "--stats", "--json")
    assert stats.returncode == 0, stats.stderr
    assert json.loads(stats.stdout)["backlog"]["delivered"] == 4
    store = Store.from_config(outbox)
    assert len(store.rows(DELIVERED, 10)) == 4
    store.close()
