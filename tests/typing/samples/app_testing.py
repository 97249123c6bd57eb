"""User code: tests with the ``broadcast_fake`` fixture and ``fake()``, and a recording
plugin, as docs/testing.md shows them.

Checked by mypy --strict (tests/typing/test_public_types.py), never run.
"""

from __future__ import annotations

import unittest
from dataclasses import dataclass

import pytest
from typing_extensions import assert_type

from broadcasting import Broadcast, BroadcastEvent, PayloadTooLargeError, PrivateChannel, Receipt
from broadcasting.plugin import Driver, Message, Payload, hookimpl
from broadcasting.testing import BroadcastFake, Sent, fake

broadcast = Broadcast({"DRIVER": "memory"})


@dataclass
class OrderShipped(BroadcastEvent):
    order_id: int
    note: str = ""

    def broadcast_on(self) -> PrivateChannel:
        return PrivateChannel(f"orders.{self.order_id}")


def ship(order_id: int, note: str = "", socket_id: str | None = None) -> Receipt:
    return broadcast.channel(OrderShipped(order_id, note).to_others(socket_id))


def test_shipping_tells_the_customer(broadcast_fake: BroadcastFake) -> None:
    ship(42, socket_id="123.456")
    found = broadcast_fake.assert_sent(
        OrderShipped,
        channel=PrivateChannel("orders.42"),
        data={"order_id": 42, "note": ""},
        times=1,
    )
    assert_type(found, list[Sent])
    [sent] = broadcast_fake.sent
    assert_type(sent, Sent)
    assert_type(sent.channels, tuple[str, ...])
    assert_type(sent.socket_id, str | None)
    assert_type(sent.data, Payload)
    assert_type(sent.event, str)
    assert_type(sent.via, str)
    assert_type(sent.on(PrivateChannel("orders.42")), bool)
    assert_type(sent.to_user(7), bool)
    assert_type(broadcast_fake.find("shipped", via="outbox"), list[Sent])

    def has_id(data: Payload) -> bool:
        return isinstance(data, dict) and data.get("id") == 1

    assert_type(broadcast_fake.find(data=has_id), list[Sent])
    assert_type(broadcast_fake.assert_not_sent("cancelled", user=7), None)
    assert_type(broadcast_fake.active, bool)


def test_a_note_too_large_fails_here_too(broadcast_fake: BroadcastFake) -> None:
    with pytest.raises(PayloadTooLargeError):
        ship(42, note="x" * 11_000)
    assert_type(broadcast_fake.assert_nothing_sent(), None)


class ShipTest(unittest.TestCase):
    def setUp(self) -> None:
        self.broadcasts = fake().start()
        assert_type(self.broadcasts, BroadcastFake)
        self.addCleanup(self.broadcasts.stop)

    def test_with_a_block(self) -> None:
        with fake() as broadcasts:
            assert_type(broadcasts, BroadcastFake)
            broadcast.channel("orders", {"id": 7}, "cancelled")
        broadcasts.assert_sent("cancelled", data={"id": 7})


class Recorder:
    def __init__(self) -> None:
        self.messages: list[Message] = []

    @hookimpl(tryfirst=True)
    def broadcasting_publish(self, driver: Driver, message: Message) -> Receipt:
        self.messages.append(message)
        return Receipt(driver.name, message.event, message.channels, message.id)


recorder = Recorder()
recorded = Broadcast({"DRIVER": "memory"}, plugins=[recorder])


def hookimpl_keeps_the_method(driver: Driver, message: Message) -> None:
    assert_type(recorder.broadcasting_publish(driver, message), Receipt)
