"""The fake records after-commit and outbox publishes when their transaction commits, never
if it rolls back, and ``assert_sent`` can ask how a publish was sent."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from broadcasting import Broadcast, ConfigurationError, InputError
from broadcasting.drivers.memory import BroadcastMemoryDriver
from broadcasting.testing import BroadcastFake, fake


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = create_engine(f"sqlite:///{tmp_path / 'app.sqlite3'}")
    yield engine
    engine.dispose()


@pytest.fixture
def broadcast(tmp_path: Path) -> Iterator[Broadcast]:
    """The memory driver, its outbox in the application's database (the engine's file): the
    fake refuses what the write would, as another SQLite file than the outbox's."""
    config = {"DRIVER": "memory", "OUTBOX": {"url": f"sqlite:///{tmp_path / 'app.sqlite3'}"}}
    with Broadcast(config) as made:
        yield made


@pytest.fixture
def recorded() -> Iterator[BroadcastFake]:
    with fake() as recorded:
        yield recorded


def begun(engine: Engine) -> Session:
    session = Session(engine)
    session.execute(text("SELECT 1"))
    return session


@pytest.mark.parametrize("via", ["after_commit", "outbox"])
def test_recorded_when_the_transaction_commits(
    broadcast: Broadcast, engine: Engine, recorded: BroadcastFake, via: str
) -> None:
    with begun(engine) as session:
        receipt = broadcast.channel("orders", {"id": 1}, "shipped", send=via, transaction=session)
        assert receipt.pending and receipt.via == via
        recorded.assert_nothing_sent()
        session.commit()
    [sent] = recorded.assert_sent("shipped", "orders", {"id": 1}, times=1, via=via)
    assert sent.via == via and sent.message_id == receipt.message_id
    recorded.assert_sent("shipped")  # without via=: however it was sent
    recorded.assert_not_sent("shipped", via="now")


@pytest.mark.parametrize("via", ["after_commit", "outbox"])
def test_never_recorded_when_it_rolls_back(
    broadcast: Broadcast, engine: Engine, recorded: BroadcastFake, via: str
) -> None:
    with begun(engine) as session:
        broadcast.channel("orders", {"id": 1}, "shipped", send=via, transaction=session)
        session.rollback()
    with Session(engine) as session, session.begin():
        broadcast.channel("orders", {"id": 2}, "kept", send=via, transaction=session)
        savepoint = session.begin_nested()
        broadcast.channel("orders", {"id": 3}, "dropped", send=via, transaction=session)
        savepoint.rollback()
    recorded.assert_not_sent("shipped")
    recorded.assert_not_sent("dropped")
    recorded.assert_sent("kept", times=1, via=via)


def test_an_outbox_publish_outside_a_transaction_is_recorded_at_once(
    broadcast: Broadcast, recorded: BroadcastFake
) -> None:
    receipt = broadcast.channel("orders", {"id": 1}, "shipped", send="outbox")
    assert receipt.pending and receipt.via == "outbox"
    [sent] = recorded.assert_sent("shipped", via="outbox")
    assert str(sent) == "memory: 'shipped' on orders {\"id\":1} (via outbox)"


def test_the_fake_writes_no_outbox_row_and_never_calls_the_driver(
    broadcast: Broadcast,
    memory: BroadcastMemoryDriver,
    recorded: BroadcastFake,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)  # where the default outbox file would be made
    broadcast.channel("orders", {"id": 1}, send="outbox")
    assert memory.messages == []
    assert list(tmp_path.iterdir()) == []


def test_now_and_after_commit_publishes_say_so(
    broadcast: Broadcast, recorded: BroadcastFake
) -> None:
    broadcast.channel("orders", {"id": 1}, "a")
    broadcast.channel("orders", {"id": 2}, "b", send="after_commit")  # no transaction: at once
    assert [(s.event, s.via) for s in recorded.sent] == [("a", "now"), ("b", "after_commit")]
    assert recorded.find(via="after_commit")[0].event == "b"
    with pytest.raises(AssertionError, match=r"no publish matched event='a', via='outbox'"):
        recorded.assert_sent("a", via="outbox")


def test_via_must_be_a_name(recorded: BroadcastFake) -> None:
    with pytest.raises(TypeError, match="via must name how it was sent"):
        recorded.find(via=1)  # type: ignore[arg-type]


def test_a_way_nobody_sends_is_still_an_error_under_the_fake(
    broadcast: Broadcast, recorded: BroadcastFake
) -> None:
    with pytest.raises(InputError, match="no installed plugin sends that way"):
        broadcast.channel("orders", {"id": 1}, send="carrier-pigeon")
    recorded.assert_nothing_sent()


async def test_async_session_commit_is_recorded(
    broadcast: Broadcast, recorded: BroadcastFake, tmp_path: Path
) -> None:
    from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'app.sqlite3'}")
    try:
        async with AsyncSession(engine) as session:
            await session.execute(text("SELECT 1"))
            await broadcast.achannel("orders", {"id": 1}, "o", send="outbox", transaction=session)
            recorded.assert_nothing_sent()
            await session.commit()
        recorded.assert_sent("o", via="outbox")  # recorded in the commit itself: no task
    finally:
        await engine.dispose()


def test_an_outbox_publish_on_a_connection_that_cannot_report_its_commit_is_recorded_as_written(
    broadcast: Broadcast, recorded: BroadcastFake, tmp_path: Path
) -> None:
    """The outbox writes in a sqlite3 (or SQLAlchemy) Connection's transaction; neither says
    when it commits, so the fake records the publish when it is written."""
    import sqlite3

    connection = sqlite3.connect(tmp_path / "app.sqlite3")
    try:
        connection.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY)")
        connection.execute("INSERT INTO orders DEFAULT VALUES")
        assert connection.in_transaction
        receipt = broadcast.channel("orders", {"id": 1}, "o", send="outbox", transaction=connection)
        assert receipt.pending
        recorded.assert_sent("o", via="outbox")
        with pytest.raises(InputError, match="sqlite3 has no commit hook"):
            broadcast.channel("orders", {"id": 1}, "a", send="after_commit", transaction=connection)
    finally:
        connection.close()


def test_the_fake_refuses_what_the_outbox_write_refuses(
    broadcast: Broadcast, recorded: BroadcastFake, tmp_path: Path
) -> None:
    """A test under the fake fails where production would: a transaction on another SQLite
    file than the outbox's, a with_options() variant the relay could not find again, or an
    event name longer than the outbox's column."""
    other = create_engine(f"sqlite:///{tmp_path / 'other.sqlite3'}")
    try:
        with begun(other) as session, pytest.raises(ConfigurationError, match="OUTBOX"):
            broadcast.channel("orders", {"id": 1}, "o", send="outbox", transaction=session)
    finally:
        other.dispose()
    variant = broadcast.driver().with_options(max_history=5)
    with pytest.raises(InputError, match="with_options"):
        variant.channel("orders", {"id": 2}, "o", send="outbox")
    with pytest.raises(InputError, match="event name is 201 characters"):
        broadcast.channel("orders", {"id": 3}, "o" * 201, send="outbox")
    recorded.assert_nothing_sent()
