"""Every Masonite 1.4 broadcasting example, run on the `ably` driver.

The seed's configuration shape (``DRIVER``/``DRIVERS`` with ``'secret'``) is used
as written, plus the emulator's address. Each example runs through the default
driver, ``driver('ably')`` and ``driver(BroadcastAblyDriver)``; the emulator
shows what Ably would have delivered.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from broadcasting import Broadcast, Receipt
from broadcasting.plugin import Driver
from servers.ably_emulator import TEST_KEY, AblyEmulator

EXAMPLES: list[tuple[str, tuple[Any, ...], list[str], str, Any]] = [
    # (id, channel() arguments, channels, event, data a subscriber gets)
    ("string", ("channel_name", "message"), ["channel_name"], "base-event", "message"),
    (
        "dict",
        ("channel_name", {"message": "hello world"}),
        ["channel_name"],
        "base-event",
        {"message": "hello world"},
    ),
    (
        "list-of-channels",
        (["channel1", "channel2"], {"message": "hello world"}),
        ["channel1", "channel2"],
        "base-event",
        {"message": "hello world"},
    ),
    (
        "event",
        ("channel_name", "message", "subscribed"),
        ["channel_name"],
        "subscribed",
        "message",
    ),
]


def seed_config(emulator: AblyEmulator) -> dict[str, Any]:
    """The seed's config/broadcast.py shape, with 'secret' as the key's name."""
    return {
        "DRIVER": "ably",
        "DRIVERS": {
            "ably": {"secret": TEST_KEY, "endpoint": emulator.host, "tls_port": emulator.port}
        },
    }


def _via(broadcast: Broadcast, how: str) -> Callable[..., Receipt]:
    if how == "default":
        return broadcast.channel
    if how == "name":
        return broadcast.driver("ably").channel
    from broadcasting.drivers import BroadcastAblyDriver as SeedName
    from broadcasting_ably import BroadcastAblyDriver

    assert SeedName is BroadcastAblyDriver
    return broadcast.driver(SeedName).channel


@pytest.mark.parametrize("how", ["default", "name", "class"])
@pytest.mark.parametrize(
    ("args", "channels", "event", "data"),
    [pytest.param(*e[1:], id=e[0]) for e in EXAMPLES],
)
def test_seed_example(
    emulator: AblyEmulator,
    how: str,
    args: tuple[Any, ...],
    channels: list[str],
    event: str,
    data: Any,
) -> None:
    with Broadcast(seed_config(emulator)) as broadcast:
        receipt = _via(broadcast, how)(*args)

    assert receipt.driver == "ably"
    assert receipt.channels == tuple(channels)
    assert receipt.event == event
    assert receipt.requests == 1  # two channels are one batch request, not one per channel
    for channel in channels:
        (stored,) = emulator.messages(channel)
        assert stored.name == event
        assert stored.data == data
        assert stored.id == f"{receipt.message_id}:0"
    assert emulator.violations == []


def test_driver_by_name_and_by_class_are_the_same_connected_driver(emulator: AblyEmulator) -> None:
    from broadcasting.drivers import BroadcastAblyDriver

    with Broadcast(seed_config(emulator)) as broadcast:
        by_name = broadcast.driver("ably")
        assert isinstance(by_name.driver, BroadcastAblyDriver)
        assert isinstance(by_name.driver, Driver)
        assert broadcast.driver(BroadcastAblyDriver) is by_name
        assert "BroadcastAblyDriver" in repr(by_name)  # print(broadcast.driver('ably'))


def test_seed_ssl_toggle_refuses_plain_http(emulator: AblyEmulator) -> None:
    """Ably refuses API-key auth without TLS, so ssl(False) fails before any request."""
    from broadcasting import ConfigurationError
    from broadcasting_ably import BroadcastAblyDriver

    with Broadcast(seed_config(emulator)) as broadcast:
        ably = broadcast.driver(BroadcastAblyDriver)
        assert ably.driver.ssl_option == "tls"
        assert ably.ssl(True).channel("channel_name", "message").requests == 1
        with pytest.raises(ConfigurationError, match="'tls'"):
            ably.ssl(False)
    assert len(emulator.publish_requests) == 1
