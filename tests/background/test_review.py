"""Defects found in review of after-commit publishing, the outbox's write path and the fake.

Each test uses real parts: SQLite files, SQLAlchemy sessions, Django's settings in a process
of their own, the Pusher driver against a loopback socket.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import Session

from broadcasting import Broadcast, ConfigurationError
from broadcasting.drivers.memory import BroadcastMemoryDriver
from broadcasting.outbox import store_for
from broadcasting.testing import fake


def _tables(path: Path) -> list[str]:
    with sqlite3.connect(path) as connection:
        return sorted(name for (name,) in connection.execute("SELECT name FROM sqlite_master"))


def _outbox_rows(path: Path) -> list[str]:
    if not path.exists() or "broadcasting_outbox" not in _tables(path):
        return []
    with sqlite3.connect(path) as connection:
        return [c for (c,) in connection.execute("SELECT channels FROM broadcasting_outbox")]


# -- the outbox row goes into the caller's database: it must be the outbox's --------------------


@pytest.fixture
def app_db(tmp_path: Path) -> Path:
    path = tmp_path / "app.sqlite3"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY)")
    return path


def test_a_session_on_another_sqlite_file_is_refused_not_written_where_no_relay_reads(
    tmp_path: Path, app_db: Path
) -> None:
    """The outbox is one SQLite file, the session's data another: the row would be written
    (its tables made) in the application's file, where no relay looks, and the publish lost.
    It is refused at the call, like a database of another kind."""
    outbox = tmp_path / "outbox.sqlite3"
    engine = create_engine(f"sqlite:///{app_db}")
    with Broadcast({"DRIVER": "memory", "OUTBOX": {"url": f"sqlite:///{outbox}"}}) as broadcast:
        with Session(engine) as session, session.begin():
            session.execute(text("INSERT INTO orders DEFAULT VALUES"))
            with pytest.raises(ConfigurationError, match="OUTBOX must name the database"):
                broadcast.channel("orders", {"id": 1}, send="outbox", transaction=session)
        assert store_for(broadcast).stats(0).backlog["pending"] == 0
    engine.dispose()
    assert _tables(app_db) == ["orders"]  # no outbox table made in the application's file


def test_a_sqlite3_connection_to_another_file_is_refused(tmp_path: Path, app_db: Path) -> None:
    outbox = tmp_path / "outbox.sqlite3"
    connection = sqlite3.connect(app_db)
    try:
        with Broadcast({"DRIVER": "memory", "OUTBOX": {"url": f"sqlite:///{outbox}"}}) as b:
            connection.execute("INSERT INTO orders DEFAULT VALUES")
            with pytest.raises(ConfigurationError, match="OUTBOX must name the database"):
                b.channel("orders", {"id": 1}, send="outbox", transaction=connection)
        connection.commit()
    finally:
        connection.close()
    assert _tables(app_db) == ["orders"]


def test_an_in_memory_database_cannot_hold_the_outbox_row(tmp_path: Path) -> None:
    connection = sqlite3.connect(":memory:")
    outbox = tmp_path / "outbox.sqlite3"
    try:
        with Broadcast({"DRIVER": "memory", "OUTBOX": {"url": f"sqlite:///{outbox}"}}) as b:
            connection.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY)")
            connection.execute("INSERT INTO orders DEFAULT VALUES")
            with pytest.raises(ConfigurationError, match="an in-memory SQLite database"):
                b.channel("orders", {"id": 1}, send="outbox", transaction=connection)
    finally:
        connection.close()


def test_the_same_file_named_another_way_is_the_outbox(
    tmp_path: Path, app_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A relative URL, a symlink: the same file, so the row is written in the transaction."""
    monkeypatch.chdir(tmp_path)
    link = tmp_path / "link.sqlite3"
    link.symlink_to(app_db)
    engine = create_engine("sqlite:///link.sqlite3")
    with Broadcast({"DRIVER": "memory", "OUTBOX": {"url": f"sqlite:///{app_db}"}}) as broadcast:
        with Session(engine) as session, session.begin():
            session.execute(text("INSERT INTO orders DEFAULT VALUES"))
            assert broadcast.channel("a", {}, send="outbox", transaction=session).pending
        connection = sqlite3.connect("app.sqlite3")
        try:
            connection.execute("INSERT INTO orders DEFAULT VALUES")
            assert broadcast.channel("b", {}, send="outbox", transaction=connection).pending
            connection.rollback()
        finally:
            connection.close()
    engine.dispose()
    assert _outbox_rows(app_db) == ['["a"]']


# -- the fake: an outbox publish on a session that has not begun yet ----------------------------


def test_the_fake_drops_an_outbox_publish_whose_session_rolls_back_after_it(
    tmp_path: Path, app_db: Path
) -> None:
    """The publish is the session's first statement: the real write begins the session's
    transaction (autobegin) and goes with its rollback; the fake recorded it at once."""
    engine = create_engine(f"sqlite:///{app_db}")
    config = {"DRIVER": "memory", "OUTBOX": {"url": f"sqlite:///{app_db}"}}
    with Broadcast(config) as broadcast:
        with Session(engine) as session:  # the real outbox: the row goes with the rollback
            broadcast.channel("orders", {"id": 1}, "real", send="outbox", transaction=session)
            session.execute(text("INSERT INTO orders DEFAULT VALUES"))
            session.rollback()
        assert _outbox_rows(app_db) == []
        with fake() as recorded:
            with Session(engine) as session:
                broadcast.channel("orders", {"id": 1}, "gone", send="outbox", transaction=session)
                session.execute(text("INSERT INTO orders DEFAULT VALUES"))
                session.rollback()
            with Session(engine) as session:
                broadcast.channel("orders", {"id": 2}, "closed", send="outbox", transaction=session)
            with Session(engine) as session:
                broadcast.channel("orders", {"id": 3}, "kept", send="outbox", transaction=session)
                recorded.assert_nothing_sent()  # not before the commit
                session.execute(text("INSERT INTO orders DEFAULT VALUES"))
                session.commit()
            recorded.assert_not_sent("gone")
            recorded.assert_not_sent("closed")
            recorded.assert_sent("kept", times=1, via="outbox")
    engine.dispose()


async def test_the_fake_drops_an_outbox_publish_whose_async_session_rolls_back_after_it(
    tmp_path: Path,
) -> None:
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'app.sqlite3'}")
    outbox = {"url": f"sqlite:///{tmp_path / 'app.sqlite3'}"}  # the fake refuses another file
    try:
        with Broadcast({"DRIVER": "memory", "OUTBOX": outbox}) as broadcast, fake() as recorded:
            async with AsyncSession(engine) as session:
                await broadcast.achannel("o", {}, "gone", send="outbox", transaction=session)
                await session.execute(text("SELECT 1"))
                await session.rollback()
            async with AsyncSession(engine) as session:
                await broadcast.achannel("o", {}, "kept", send="outbox", transaction=session)
                recorded.assert_nothing_sent()
                await session.commit()
            recorded.assert_not_sent("gone")
            recorded.assert_sent("kept", times=1, via="outbox")
    finally:
        await engine.dispose()


# -- a publish task the event loop's end cancels is reported ------------------------------------


@pytest.fixture
def silent_service() -> Iterator[int]:
    """A loopback port that accepts connections and never answers: the Pusher driver's
    request is still waiting when the event loop ends (a stand-in for a slow service)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.2)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        for one in accepted:
            one.close()
        server.close()


def test_an_after_commit_publish_cut_off_by_the_loops_end_is_logged(
    silent_service: int, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """``asyncio.run()`` ends right after the commit: the publish task it started is
    cancelled with its request in flight. It is lost or maybe delivered, and the log says so
    (as for any failure after commit), rather than nothing at all."""
    options = {
        "app_id": "1",
        "client": "key",
        "secret": "secret",
        "host": "127.0.0.1",
        "port": silent_service,
        "ssl": False,
    }
    broadcast = Broadcast({"DRIVER": "pusher", "DRIVERS": {"pusher": options}})
    receipts = []

    async def main() -> None:
        engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'app.sqlite3'}")
        async with AsyncSession(engine) as session, session.begin():
            await session.execute(text("SELECT 1"))
            receipts.append(
                await broadcast.achannel(
                    "orders", {"id": 1}, send="after_commit", transaction=session
                )
            )
        await engine.dispose()

    caplog.set_level(logging.ERROR, logger="broadcasting.background")
    try:
        asyncio.run(main())
    finally:
        broadcast.close()
    [receipt] = receipts
    assert receipt.pending
    found = [r for r in caplog.records if r.name == "broadcasting.background"]
    assert len(found) == 1, [r.getMessage() for r in caplog.records]
    assert found[0].levelno == logging.ERROR
    assert receipt.message_id in found[0].getMessage()
    assert "unknown" in found[0].getMessage() and "cancelled" in found[0].getMessage()


# -- Django: a changed BROADCASTING setting moves the outbox too ----------------------------------


def test_a_changed_setting_moves_the_outbox_of_djangos_broadcast(tmp_path: Path) -> None:
    """``override_settings(BROADCASTING=...)`` rebuilds the project's Broadcast; an outbox
    write after it goes to the new OUTBOX, not the first one (a fresh process: Django's
    settings are per process)."""
    first, second = tmp_path / "first.sqlite3", tmp_path / "second.sqlite3"
    script = f"""
import django
from django.conf import settings
settings.configure(
    DATABASES={{}},
    INSTALLED_APPS=["broadcasting.contrib.django"],
    BROADCASTING={{"DRIVER": "memory", "OUTBOX": {{"url": "sqlite:///{first}"}}}},
)
django.setup()
from django.test.utils import override_settings
from broadcasting.contrib.django import broadcast
broadcast.channel("a", {{}}, send="outbox")
moved = {{"DRIVER": "memory", "OUTBOX": {{"url": "sqlite:///{second}"}}}}
with override_settings(BROADCASTING=moved):
    broadcast.channel("b", {{}}, send="outbox")
broadcast.channel("c", {{}}, send="outbox")
"""
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
    assert _outbox_rows(first) == ['["a"]', '["c"]']
    assert _outbox_rows(second) == ['["b"]']


# -- the fake: an after-commit publish is recorded in the commit, even on an event loop ----------


async def test_the_fake_records_an_after_commit_publish_in_the_commit_of_a_sync_session(
    tmp_path: Path, app_db: Path
) -> None:
    """A sync Session committed in async code (a test calling the application's sync code,
    an async view using a sync session): the real publish goes as a task of the loop; the
    fake records it in the commit, so an assertion right after the commit sees it."""
    engine = create_engine(f"sqlite:///{app_db}")
    try:
        with Broadcast({"DRIVER": "memory"}) as broadcast, fake() as recorded:
            with Session(engine) as session:
                session.execute(text("INSERT INTO orders DEFAULT VALUES"))
                receipt = await broadcast.achannel(
                    "orders", {"id": 1}, "created", send="after_commit", transaction=session
                )
                assert receipt.pending
                recorded.assert_nothing_sent()
                session.commit()
                [sent] = recorded.assert_sent("created", via="after_commit")
                assert sent.message_id == receipt.message_id
            with Session(engine) as session:
                session.execute(text("INSERT INTO orders DEFAULT VALUES"))
                await broadcast.achannel(
                    "orders", {}, "gone", send="after_commit", transaction=session
                )
                session.rollback()
            await asyncio.sleep(0.01)  # nothing is left to run later either
            recorded.assert_sent("created", times=1)
            recorded.assert_not_sent("gone")
    finally:
        engine.dispose()


# -- fork(): the after-commit tasks' lock is the parent's ----------------------------------------


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork()")
def test_a_child_forked_while_the_lock_of_commit_tasks_was_held_still_publishes() -> None:
    """A thread of the parent (its event loop, ending a publish task) holds the lock of the
    after-commit tasks at the moment another thread forks: in the child nobody releases it,
    so its first after-commit publish on an event loop would hang."""
    from broadcasting import _background

    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with _background._tasks_lock:
            held.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    assert held.wait(10)
    pid = os.fork()
    if pid == 0:  # the child: publish after a commit made on an event loop, or be stopped
        code = 3
        try:
            import signal

            signal.alarm(10)
            engine = create_engine("sqlite://")
            broadcast = Broadcast({"DRIVER": "memory"})

            async def main() -> None:
                with Session(engine) as session:
                    session.execute(text("SELECT 1"))
                    await broadcast.achannel("o", {}, send="after_commit", transaction=session)
                    session.commit()
                await asyncio.sleep(0.01)

            asyncio.run(main())
            memory = broadcast.driver(BroadcastMemoryDriver).driver
            code = 0 if len(memory.messages) == 1 else 1
        finally:
            os._exit(code)
    release.set()
    holder.join(10)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the child hung (SIGALRM) or lost the publish"


def test_an_outbox_attached_to_the_callers_connection_is_written_there(
    tmp_path: Path, app_db: Path
) -> None:
    """The application's connection has the outbox's file attached: the row goes into it, in
    the same transaction (SQLite commits both files together), so it is not refused."""
    outbox = tmp_path / "outbox.sqlite3"
    with Broadcast({"DRIVER": "memory", "OUTBOX": {"url": f"sqlite:///{outbox}"}}) as broadcast:
        broadcast.channel("setup", {}, send="outbox")  # the outbox makes its tables
        connection = sqlite3.connect(app_db)
        try:
            connection.execute("ATTACH DATABASE ? AS outbox", (str(outbox),))
            connection.execute("INSERT INTO orders DEFAULT VALUES")
            broadcast.channel("orders", {}, send="outbox", transaction=connection)
            connection.commit()
        finally:
            connection.close()
    assert _outbox_rows(outbox) == ['["setup"]', '["orders"]']
