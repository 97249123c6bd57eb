"""Every Broadcast loads the built-in plugins of its ``broadcasting.plugins`` entry points
(the SQLAlchemy, sqlite3 and Django transactions): with none of the optional libraries
installed, that and every way of sending that needs none of them must still work.

A fresh interpreter with an import hook that makes the optional libraries missing stands in
for a virtualenv without them (tests/isolated/run.py proves the same with real wheels)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

OPTIONAL = (
    "django",
    "asgiref",
    "sqlalchemy",
    "psycopg",
    "flask",
    "celery",
    "kombu",
    "rq",
    "redis",
    "dramatiq",
    "starlette",
    "fastapi",
)

SCRIPT = f"""
import sys
from importlib.abc import MetaPathFinder

MISSING = {OPTIONAL!r}

class Missing(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in MISSING:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None

sys.meta_path.insert(0, Missing())

from broadcasting import Broadcast

b = Broadcast({{"DRIVER": "memory", "OUTBOX": {{"url": "sqlite:///" + sys.argv[1]}}}})
assert b.channel("orders", {{"n": 1}}).via == "now"
assert not b.channel("orders", {{"n": 2}}, send="after_commit").pending  # nothing to wait for
assert b.channel("orders", {{"n": 3}}, send="outbox").pending
from broadcasting.outbox import Relay
Relay(b).run_once()
assert [m.data for m in b.driver("memory").driver.messages] == [{{"n": 1}}, {{"n": 2}}, {{"n": 3}}]
import broadcasting.contrib.django, broadcasting.contrib.django.transaction
loaded = sorted(m for m in sys.modules if m.split(".")[0] in MISSING)
assert not loaded, loaded
print("ok")
"""


def test_no_optional_library_is_needed_to_publish_in_any_built_in_way(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "outbox.sqlite3")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
    # the outbox it was given (and SQLite's -wal/-shm beside it), nothing else
    assert {p.name.split("-")[0] for p in tmp_path.iterdir()} == {"outbox.sqlite3"}
