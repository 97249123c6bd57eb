"""Text UTF-8 cannot encode (a lone surrogate: what ``os.environ`` and ``sys.argv`` hold for
each byte of a value that is not UTF-8) in the driver's options and in the arguments of its
state queries: a typed error before any request, with no form of the key anywhere in it.

Through the real driver, SDK and TLS against the local emulator (Ably cannot run here).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from broadcasting import Broadcast, ConfigurationError, InputError, InvalidChannelError
from servers.ably_emulator import TEST_KEY, AblyEmulator
from servers.secret_scan import chain, showing

SURROGATE = "\udcff"  # the byte 0xff of an environment variable, as Python decodes it


@pytest.mark.parametrize(
    "key",
    [
        TEST_KEY + SURROGATE,  # a stray byte after the secret
        TEST_KEY.replace(".", SURROGATE + ".", 1),  # one in the public key name
        TEST_KEY.replace(":", ":é", 1),  # a character no Ably key has
    ],
)
@pytest.mark.parametrize("name", ["key", "secret"])
def test_a_key_that_is_not_ascii_is_a_configuration_error_holding_no_part_of_it(
    emulator: AblyEmulator, name: str, key: str
) -> None:
    options = {**emulator.options(), "key": None, name: key}
    config = {"DRIVER": "ably", "DRIVERS": {"ably": options}}
    with pytest.raises(ConfigurationError) as caught, Broadcast(config) as broadcast:
        broadcast.channel("orders", "m")
    error = caught.value
    assert error.key == name
    secret = key.split(":", 1)[1]
    # not in any message, argument, or local of any frame of the whole chain
    assert showing(error, secret, skip=__file__) == []
    assert not [exc for exc in chain(error) if any(secret in repr(a) for a in exc.args)]
    assert emulator.requests == []


def test_a_client_id_with_a_lone_surrogate_is_a_configuration_error(
    emulator: AblyEmulator,
) -> None:
    config = {"DRIVER": "ably", "DRIVERS": {"ably": emulator.options(client_id="me" + SURROGATE)}}
    with pytest.raises(ConfigurationError) as caught, Broadcast(config) as broadcast:
        broadcast.channel("orders", "m")
    assert caught.value.key == "client_id"
    assert emulator.requests == []


def test_a_non_ascii_client_id_still_publishes(
    emulator: AblyEmulator, make_broadcast: Callable[..., Broadcast]
) -> None:
    make_broadcast(client_id="zoë").channel("orders", "m")
    (stored,) = emulator.messages("orders")
    assert stored.client_id == "zoë"


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda b: b.channel_info("orders" + SURROGATE), InvalidChannelError),
        (lambda b: b.members("presence:chat" + SURROGATE), InvalidChannelError),
        (lambda b: b.occupied_channels("orders" + SURROGATE), InputError),
        (lambda b: b.occupied_channels(42), InputError),
        (lambda b: b.terminate_user("user" + SURROGATE), InputError),
    ],
    ids=["channel_info", "members", "occupied_channels", "occupied_channels-int", "terminate"],
)
def test_a_query_argument_no_url_can_hold_is_an_input_error_before_any_request(
    emulator: AblyEmulator,
    broadcast: Broadcast,
    call: Callable[[Broadcast], object],
    error: type[Exception],
) -> None:
    with pytest.raises(error) as caught:
        call(broadcast)
    # not "Ably's answer could not be read": nothing was asked
    assert "answer" not in str(caught.value)
    assert emulator.requests == []


async def test_async_queries_refuse_it_the_same_way(
    emulator: AblyEmulator, abroadcast: Broadcast
) -> None:
    with pytest.raises(InvalidChannelError):
        await abroadcast.achannel_info("orders" + SURROGATE)
    with pytest.raises(InputError):
        await abroadcast.aoccupied_channels("orders" + SURROGATE)
    with pytest.raises(InputError):
        await abroadcast.aterminate_user("user" + SURROGATE)
    assert emulator.requests == []


def test_terminate_user_of_a_refused_id_notes_no_revocation(broadcast: Broadcast) -> None:
    from broadcasting_ably._auth import REVOKED

    with pytest.raises(InputError):
        broadcast.terminate_user("user" + SURROGATE)
    assert REVOKED.at("appid.keyid", "user" + SURROGATE) is None
