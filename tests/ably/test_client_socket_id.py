"""A socket id read from the request (``socket_id_from``) is the client's wish to be left out:
under the Ably driver, which cannot leave a connection out, the publish goes to everyone
instead of refusing it. Before, any ``X-Socket-ID`` header (Laravel Echo sends it with every
axios request, and any client can send it) made the view's publish raise InputError: a 500."""

from __future__ import annotations

import pytest

from broadcasting import Broadcast, InputError
from broadcasting.web import socket_id_from
from servers.ably_emulator import AblyEmulator

HEADERS = {"X-Socket-ID": "1234.5678"}


def test_a_client_s_socket_id_is_sent_to_everyone_on_ably(
    broadcast: Broadcast, emulator: AblyEmulator
) -> None:
    receipt = broadcast.channel("orders", {"id": 1}, "shipped", socket_id=socket_id_from(HEADERS))
    assert receipt.driver == "ably" and receipt.requests == 1 and not receipt.pending
    [stored] = emulator.messages("orders")
    assert stored.name == "shipped"


def test_read_with_the_driver_s_own_pattern_too(
    broadcast: Broadcast, emulator: AblyEmulator
) -> None:
    """An Ably connection id, read with the driver's pattern, is a wish as well."""
    pattern = broadcast.driver().driver.socket_id_pattern
    if pattern.fullmatch("abc-DEF_123") is None:
        pytest.fail(f"the test's Ably-shaped id does not match {pattern.pattern}")
    socket_id = socket_id_from({"X-Socket-ID": "abc-DEF_123"}, broadcast.driver())
    assert socket_id == "abc-DEF_123"
    assert broadcast.channel("orders", {"id": 2}, "shipped", socket_id=socket_id).requests == 1
    assert len(emulator.messages("orders")) == 1


def test_a_socket_id_the_application_passes_itself_is_still_refused(
    broadcast: Broadcast, emulator: AblyEmulator
) -> None:
    with pytest.raises(InputError, match="this driver cannot exclude a socket_id"):
        broadcast.channel("orders", {"id": 3}, "shipped", socket_id="1234.5678")
    assert emulator.messages("orders") == []
