"""Review (session 36) of a driver's plan(): a plan that is not a partition of the message's
channels is the driver's bug, named before any request (docs/writing-a-driver.md, section 6:
"every channel must be in exactly one group").

The drivers are small ``send()`` drivers of this file: what is checked is the core's handling
of what their ``plan()`` returns, and no service is involved."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from broadcasting import Broadcast, Receipt
from broadcasting.plugin import Batch, Driver, Message

MODES = ("sync", "async")


def _driver(groups: Any) -> tuple[type[Driver], list[tuple[str, ...]]]:
    sent: list[tuple[str, ...]] = []

    class Planned(Driver):
        name = "planned"

        def plan(self, message: Message) -> Any:
            return groups(message) if callable(groups) else groups

        def send(self, batch: Batch) -> None:
            sent.append(tuple(batch.channels))

    return Planned, sent


def _publish(cls: type[Driver], mode: str, channels: list[str]) -> Receipt:
    with Broadcast({"DRIVER": "planned"}) as broadcast:
        target = broadcast.driver(cls)
        if mode == "sync":
            return target.channel(channels, {"id": 1}, "shipped")
        return asyncio.run(target.achannel(channels, {"id": 1}, "shipped"))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("groups", "problem"),
    [
        ([], "returned no groups"),  # was an IndexError from the core's own code
        ([("a",), ("b",), ("a",)], "put channel 'a' in two groups"),  # 'a' delivered twice
        ([("a", "b"), ("leaked",)], "added channel 'leaked'"),  # sent where nobody asked
        ([("a",), ()], "an empty group"),  # a request to no channel at all
        ("ab", "returned str"),
        ([("a", 1)], "a group holding int"),
        ([("a",)], "left out channel 'b'"),
    ],
)
def test_a_plan_that_is_not_a_partition_is_named_before_any_request(
    mode: str, groups: Any, problem: str
) -> None:
    cls, sent = _driver(groups)
    with pytest.raises(TypeError) as raised:
        _publish(cls, mode, ["a", "b"])
    said = str(raised.value)
    assert said.startswith("driver 'planned': plan() "), said
    assert problem in said, said
    assert sent == []  # nothing went out


@pytest.mark.parametrize("mode", MODES)
def test_a_sound_plan_of_its_own_is_followed(mode: str) -> None:
    """Each channel alone, in the driver's order; lists accepted as groups."""
    cls, sent = _driver(lambda m: [[c] for c in reversed(m.channels)])
    receipt = _publish(cls, mode, ["a", "b", "c"])
    assert receipt.channels == ("a", "b", "c") and receipt.requests == 3
    assert sorted(sent) == [("a",), ("b",), ("c",)]
