"""Every example of the Masonite 1.4 Broadcasting page, with `masonite` -> `broadcasting`.

The bodies below are the seed's, verbatim. They run against the `memory` driver;
the `ably` examples run against an in-process stand-in registered under the name
`ably` (a memory driver), because this file tests the core. The real Ably driver
runs the same examples against the Ably emulator in tests/ably/, the Pusher driver
against soketi in tests/pusher/.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from broadcasting import Broadcast
from broadcasting.drivers.memory import BroadcastMemoryDriver
from broadcasting.plugin import register_driver, unregister_driver


class AblyStandIn(BroadcastMemoryDriver):
    """A memory driver answering to the name `ably` (see the module docstring)."""

    name = "ably"


@pytest.fixture
def broadcast() -> Iterator[Broadcast]:
    register_driver("ably", AblyStandIn)
    try:
        with Broadcast({"DRIVER": "memory", "DRIVERS": {"ably": {}}}) as broadcast:
            yield broadcast
    finally:
        unregister_driver("ably")


# fmt: off
class Controller:
    # --- the seed's examples, verbatim ---------------------------------------
    def show_print(self, broadcast: Broadcast):
        print(broadcast) # prints the driver class

    def show_driver(self, broadcast: Broadcast):
        print(broadcast.driver('ably')) # prints the ably driver class

    def show_channel(self, broadcast: Broadcast):
        broadcast.channel('channel_name', 'message')

    def show_dict(self, broadcast: Broadcast):
        broadcast.channel('channel_name', {'message': 'hello world'})

    def show_list(self, broadcast: Broadcast):
        broadcast.channel(['channel1', 'channel2'], {'message': 'hello world'})

    def show_event(self, broadcast: Broadcast):
        broadcast.channel('channel_name', 'message', 'subscribed')

    def show_swap(self, broadcast: Broadcast):
        broadcast.driver('ably').channel('channel_name', 'message', 'subscribed')

    def show_class(self, broadcast: Broadcast):
        from broadcasting.drivers import BroadcastAblyDriver

        broadcast.driver(BroadcastAblyDriver).channel('channel_name', 'message', 'subscribed')
# fmt: on


def sent(broadcast: Broadcast, name: str = "memory") -> list[tuple[tuple[str, ...], object, str]]:
    driver = broadcast.driver(name).driver
    assert isinstance(driver, BroadcastMemoryDriver)
    return [(m.channels, m.data, m.event) for m in driver.messages]


def test_print_shows_the_driver(broadcast: Broadcast, capsys: pytest.CaptureFixture[str]) -> None:
    Controller().show_print(broadcast)
    assert capsys.readouterr().out.strip() == "<Broadcast driver='memory'>"


def test_print_driver_shows_the_ably_driver_class(
    broadcast: Broadcast, capsys: pytest.CaptureFixture[str]
) -> None:
    Controller().show_driver(broadcast)
    # the broadcaster of the ably driver, which names the driver's class
    assert capsys.readouterr().out.strip() == ("<Broadcaster 'ably': AblyStandIn>")


def test_channel_with_a_string(broadcast: Broadcast) -> None:
    Controller().show_channel(broadcast)
    assert sent(broadcast) == [(("channel_name",), "message", "base-event")]


def test_channel_with_a_dict(broadcast: Broadcast) -> None:
    Controller().show_dict(broadcast)
    assert sent(broadcast) == [(("channel_name",), {"message": "hello world"}, "base-event")]


def test_channel_with_a_list_of_channels(broadcast: Broadcast) -> None:
    Controller().show_list(broadcast)
    assert sent(broadcast) == [(("channel1", "channel2"), {"message": "hello world"}, "base-event")]


def test_channel_with_an_event_name(broadcast: Broadcast) -> None:
    Controller().show_event(broadcast)
    assert sent(broadcast) == [(("channel_name",), "message", "subscribed")]


def test_swapping_drivers_by_name(broadcast: Broadcast) -> None:
    Controller().show_swap(broadcast)
    assert sent(broadcast, "ably") == [(("channel_name",), "message", "subscribed")]
    assert sent(broadcast) == []


def test_swapping_drivers_by_class(broadcast: Broadcast) -> None:
    Controller().show_class(broadcast)
    assert sent(broadcast, "ably") == [(("channel_name",), "message", "subscribed")]
    assert sent(broadcast) == []
