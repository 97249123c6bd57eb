"""Which way a publish is sent (the call's ``send=`` > the event's ``broadcast_send`` > the
config's ``SEND``), and the errors for a way or a transaction nobody handles."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from broadcasting import Broadcast, BroadcastEvent, InputError
from broadcasting.drivers.memory import BroadcastMemoryDriver


@dataclass
class OrderShipped(BroadcastEvent):
    order_id: int

    def broadcast_on(self) -> str:
        return f"orders.{self.order_id}"


@dataclass
class OrderPaid(OrderShipped):
    broadcast_send: ClassVar[str] = "after_commit"


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = create_engine(f"sqlite:///{tmp_path / 'app.sqlite3'}")
    yield engine
    engine.dispose()


def pending_session(engine: Engine) -> Session:
    session = Session(engine)
    session.execute(text("SELECT 1"))  # begins its transaction
    assert session.in_transaction()
    return session


def messages(broadcast: Broadcast) -> BroadcastMemoryDriver:
    return broadcast.driver(BroadcastMemoryDriver).driver


def test_the_config_s_send_is_the_default(engine: Engine) -> None:
    with Broadcast({"DRIVER": "memory", "SEND": "after_commit"}) as broadcast:
        with pending_session(engine) as session:
            receipt = broadcast.channel("orders", {"id": 1}, transaction=session)
            assert receipt.pending and receipt.via == "after_commit"
            assert messages(broadcast).messages == []
            session.commit()
        assert [m.via for m in messages(broadcast).messages] == ["after_commit"]


def test_the_event_class_says_more_than_the_config(engine: Engine) -> None:
    with Broadcast({"DRIVER": "memory", "SEND": "now"}) as broadcast:
        with pending_session(engine) as session:
            receipt = broadcast.channel(OrderPaid(7), transaction=session)
            assert receipt.pending and receipt.via == "after_commit"
            now = broadcast.channel(OrderShipped(8))  # no broadcast_send: the config's "now"
            assert not now.pending and now.via == "now"
            session.commit()
        assert [(m.channels, m.via) for m in messages(broadcast).messages] == [
            (("orders.8",), "now"),
            (("orders.7",), "after_commit"),
        ]


def test_the_call_says_more_than_the_event_class(engine: Engine) -> None:
    with Broadcast({"DRIVER": "memory", "SEND": "after_commit"}) as broadcast:
        with pending_session(engine) as session:
            receipt = broadcast.channel(OrderPaid(7), send="now")
            assert not receipt.pending and receipt.via == "now"
            session.rollback()
        assert [m.via for m in messages(broadcast).messages] == ["now"]


def test_an_unknown_way_is_an_input_error_and_nothing_is_sent(broadcast: Broadcast) -> None:
    with pytest.raises(InputError, match=r"send='later': no installed plugin sends that way"):
        broadcast.channel("orders", {"id": 1}, send="later")
    with pytest.raises(InputError, match="send must name how to send"):
        broadcast.channel("orders", {"id": 1}, send="")
    assert messages(broadcast).messages == []


def test_an_event_class_with_a_bad_broadcast_send_is_named(broadcast: Broadcast) -> None:
    @dataclass
    class Odd(OrderShipped):
        broadcast_send: ClassVar[object] = 3

    with pytest.raises(InputError, match=r"Odd\.broadcast_send must name how to send"):
        broadcast.channel(Odd(1))


def test_an_unknown_transaction_object_is_a_type_error_before_anything_is_sent(
    broadcast: Broadcast,
) -> None:
    class Unit:
        """Something that is not a transaction."""

    with pytest.raises(TypeError, match=r"transaction=\S*Unit: no plugin adapts it"):
        broadcast.channel("orders", {"id": 1}, send="after_commit", transaction=Unit())
    assert messages(broadcast).messages == []


def test_a_transaction_with_send_now_is_a_type_error(broadcast: Broadcast, engine: Engine) -> None:
    with Session(engine) as session, pytest.raises(TypeError, match="not 'now'"):
        broadcast.channel("orders", {"id": 1}, send="now", transaction=session)
    assert messages(broadcast).messages == []


def test_without_a_transaction_after_commit_is_sent_at_once(broadcast: Broadcast) -> None:
    receipt = broadcast.channel("orders", {"id": 1}, send="after_commit")
    assert not receipt.pending and receipt.via == "after_commit"
    assert [m.data for m in messages(broadcast).messages] == [{"id": 1}]
