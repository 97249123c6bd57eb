"""What the background-publishing tests share: real databases, the transaction plugins.

PostgreSQL (127.0.0.1:5432) and MariaDB (127.0.0.1:3306) are the machine's, database
``test``: each test makes tables of its own (a uuid suffix); a missing server fails under CI,
else skips.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from types import ModuleType
from typing import Any

PG_USERS = ("postgres", "root")
PG_HOST = "127.0.0.1:5432"


def transaction_plugins() -> list[ModuleType]:
    """The plugins that adapt a caller's transaction (the core's entry points, once added)."""
    import broadcasting.contrib.django.transaction as django_plugin
    import broadcasting.contrib.sqlalchemy as sqlalchemy_plugin
    import broadcasting.contrib.sqlite as sqlite_plugin

    return [sqlalchemy_plugin, sqlite_plugin, django_plugin]


def _service_missing(what: str, reason: str) -> None:
    from soketi_pytest import unavailable  # tests/servers, on the path (conftest.py)

    unavailable(what, f"{what} is not running here: {reason}")


def postgres_url(driver: str = "psycopg") -> str:
    """A SQLAlchemy URL of the machine's PostgreSQL, with the first user that connects."""
    import psycopg

    errors = []
    for user in PG_USERS:
        try:
            with psycopg.connect(f"postgresql://{user}@{PG_HOST}/test", connect_timeout=3):
                return f"postgresql+{driver}://{user}@{PG_HOST}/test"
        except psycopg.OperationalError as exc:
            errors.append(f"{user}: {exc}")
    _service_missing("PostgreSQL at 127.0.0.1:5432", "; ".join(errors))
    raise AssertionError("unreachable")


def mysql_url(driver: str = "pymysql") -> str:
    """A SQLAlchemy URL of the machine's MariaDB (127.0.0.1:3306, root, no password, database
    ``test``)."""
    import pymysql

    try:
        pymysql.connect(host="127.0.0.1", port=3306, user="root", connect_timeout=3).close()
    except pymysql.Error as exc:
        _service_missing("MariaDB at 127.0.0.1:3306", str(exc))
    return f"mysql+{driver}://root@127.0.0.1:3306/test"


def unique(prefix: str) -> str:
    """A table name of this test's own."""
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


class Subscriber:
    """A real Pusher WebSocket subscriber on soketi, on an event loop of its own thread, for
    sync tests (the framework's test client runs the app on a loop of its own)."""

    def __init__(self, soketi: Any, *channels: str) -> None:
        import asyncio
        import threading

        from pusher_ws import PusherSubscriber

        self._soketi = soketi
        self._channels = channels
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._subscriber = self._run(PusherSubscriber(soketi.ws_url()).connect())
        self._run(self._subscriber.subscribe(*channels))

    def _run(self, coro: Any, timeout: float = 30) -> Any:
        import asyncio

        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def next_data(self, timeout: float = 10) -> Any:
        """The next event's JSON data (waits for it; fails after ``timeout``)."""
        return self._run(self._subscriber.next_event(timeout)).json()

    def rest(self) -> list[Any]:
        """Every event delivered so far and not yet taken: a marker published straight to
        soketi after them comes last (soketi keeps one connection's order)."""
        from broadcasting import Broadcast

        async def publish(marker: str) -> None:
            with Broadcast(
                {"DRIVER": "pusher", "DRIVERS": {"pusher": self._soketi.driver_options()}}
            ) as direct:
                await direct.achannel(self._channels[0], marker, "marker")

        return [event.json() for event in self._run(self._subscriber.until_marker(publish))]

    def close(self) -> None:
        self._run(self._subscriber.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


ROOT = Path(__file__).resolve().parents[2]
#: Where the "after commit" and "testing" text lives.
DOC_FILES = (ROOT / "docs" / "background.md",)


def doc_block(name: str) -> str:
    """The python block named ``name`` (``<!-- snippet: NAME -->``) of the background docs."""
    import re

    marker = re.escape(f"<!-- snippet: {name} -->")
    pattern = re.compile(rf"{marker}\s*```python\n(.*?)^```", re.S | re.M)
    for path in DOC_FILES:
        if path.exists():
            found = pattern.search(path.read_text(encoding="utf-8"))
            if found:
                return found.group(1)
    raise AssertionError(f"no block named {name!r} in {', '.join(p.name for p in DOC_FILES)}")
