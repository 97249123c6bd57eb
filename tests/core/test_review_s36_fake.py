"""Review (session 36) of the fake's matching of event objects: the object sent matches itself."""

from __future__ import annotations

from typing import Any

import pytest

from broadcasting import Broadcast, BroadcastEvent
from broadcasting.testing import BroadcastFake


class PlainShipped(BroadcastEvent):
    """A plain class: it compares by identity, as Python's objects do by default."""

    def __init__(self, order_id: int) -> None:
        self.order_id = order_id

    def broadcast_on(self) -> Any:
        return "orders"


class MasoniteStyle:
    """An event with no base class at all (docs/events.md: any object with broadcast_on)."""

    def __init__(self, order_id: int) -> None:
        self.order_id = order_id

    def broadcast_on(self) -> Any:
        return "orders"

    def broadcast_with(self) -> Any:
        return {"order_id": self.order_id}


@pytest.mark.parametrize("cls", [PlainShipped, MasoniteStyle])
def test_the_event_object_sent_matches_itself(broadcast_fake: BroadcastFake, cls: Any) -> None:
    """docs/testing.md: an event object is "compared with ==". For a class without __eq__
    that is identity, and the object that was sent is the one the test holds; the fake
    compared a deep copy of it instead, which is never identical, so assert_sent(event)
    failed for the very object the code under test published."""
    sent, other = cls(42), cls(42)
    with Broadcast({"DRIVER": "memory"}) as broadcast:
        broadcast.channel(sent)
    broadcast_fake.assert_sent(sent, times=1)
    broadcast_fake.assert_not_sent(other)  # equal fields, another object: == says no


def test_a_value_compared_event_still_matches_as_it_was_sent(
    broadcast_fake: BroadcastFake,
) -> None:
    """The identity match is only for classes that compare by identity: an object that
    compares by value and changed after the publish still matches what was sent."""
    from dataclasses import dataclass

    @dataclass
    class Noted(BroadcastEvent):
        note: str

        def broadcast_on(self) -> Any:
            return "orders"

    event = Noted("first")
    with Broadcast({"DRIVER": "memory"}) as broadcast:
        broadcast.channel(event)
    event.note = "changed later"
    broadcast_fake.assert_not_sent(event)
    broadcast_fake.assert_sent(Noted("first"), times=1)
