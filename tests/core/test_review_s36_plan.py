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


@pytest.mark.parametrize(
    ("declared", "named"),
    [
        ({"channels_per_request": 0}, "channels_per_request"),  # was range()'s ValueError
        ({"channels_per_request": -1}, "channels_per_request"),  # was an IndexError
        ({"channels_per_request": 2.5}, "channels_per_request"),  # was a TypeError
        ({"channels_per_request": True}, "channels_per_request"),  # was taken as 1
        ({"batch_channels": 5, "batch_bytes": 0}, "batch_bytes"),  # was quietly no batching
        ({"batch_channels": -3}, "batch_channels"),
        ({"batch_channels": 2.5}, "batch_channels"),
    ],
)
def test_capabilities_a_driver_declares_are_checked_where_it_declares_them(
    declared: dict[str, Any], named: str
) -> None:
    """Chunking and batching limits that cannot be planned with failed every publish with
    an error from the core's planning (or were quietly ignored): the declaration is refused,
    as a bad dedup_window already was."""
    from broadcasting.plugin import Capabilities

    with pytest.raises(ValueError, match=rf"^Capabilities: {named} must be an int >= "):
        Capabilities(**declared)


def test_the_least_capabilities_are_accepted() -> None:
    from broadcasting.plugin import Capabilities

    least = Capabilities(channels_per_request=1, batch_channels=0, batch_bytes=1)
    assert least.channels_per_request == 1 and not least.batches
