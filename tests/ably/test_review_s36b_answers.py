"""What a 2xx without an acknowledgement means for one channel's publish.

The README says a 2xx with no content (or ``{}``) acknowledges one channel's publish, as the
``ably`` SDK's own publish reads it. But the driver read answers through the SDK's
``request()``, which fails with ``KeyError`` on an answer without a ``Content-Type`` (a 204
with no content may well have none): such a publish ended *unknown*. And ``request()`` reads
the JSON answers ``[]``, ``0``, ``false``, ``""`` and ``null`` as no items, like no content,
so each of them counted as delivered though none acknowledges anything. The driver now reads
the SDK's response itself: no content, with or without a ``Content-Type``, or ``{}``
acknowledges; any other body without a message id or serials leaves the channel *unknown*.

The driver, the ``ably`` SDK and httpx are real; the emulator stands in for Ably (no Ably
server can run here) and answers what a test tells it to (``reply_next``), after storing the
messages.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from broadcasting import Broadcast, PublishError
from servers.ably_emulator import AblyEmulator


@pytest.mark.parametrize("status", [200, 201, 204])
def test_no_content_without_a_content_type_acknowledges_one_channel(
    emulator: AblyEmulator, make_broadcast: Callable[..., Broadcast], status: int
) -> None:
    emulator.reply_next(status, body=b"", content_type=None)
    receipt = make_broadcast(retries=0).channel("orders", "m")
    assert (receipt.channels, receipt.requests) == (("orders",), 1)


async def test_no_content_without_a_content_type_on_the_async_path(
    emulator: AblyEmulator, make_broadcast: Callable[..., Broadcast]
) -> None:
    broadcast = make_broadcast(retries=0)
    try:
        emulator.reply_next(204, body=b"", content_type=None)
        assert (await broadcast.achannel("orders", "m")).channels == ("orders",)
    finally:
        await broadcast.aclose()


def test_no_content_still_acknowledges_nothing_of_several_channels(
    emulator: AblyEmulator, make_broadcast: Callable[..., Broadcast]
) -> None:
    emulator.reply_next(204, body=b"", content_type=None)
    with pytest.raises(PublishError) as caught:
        make_broadcast(retries=0).channel(["a", "b"], "m")
    assert (caught.value.delivered, caught.value.unknown) == ((), ("a", "b"))


JSON, MSGPACK = "application/json", "application/x-msgpack"
FALSY = [b"[]", b"0", b"false", b'""', b"null", b"[{}]", b"[[]]"]
#: msgpack's [], 0, false, "", nil and [{}]
FALSY_MSGPACK = [b"\x90", b"\x00", b"\xc2", b"\xa0", b"\xc0", b"\x91\x80"]


@pytest.mark.parametrize(
    ("body", "content_type"),
    [(body, JSON) for body in FALSY] + [(body, MSGPACK) for body in FALSY_MSGPACK],
)
def test_a_falsy_body_is_no_acknowledgement(
    emulator: AblyEmulator, make_broadcast: Callable[..., Broadcast], body: bytes, content_type: str
) -> None:
    """These were delivered (a Receipt): the SDK's ``request()`` reads them as no items."""
    emulator.reply_next(201, body=body, content_type=content_type)
    with pytest.raises(PublishError) as caught:
        make_broadcast(retries=0).channel("orders", "m")
    error = caught.value
    assert (error.delivered, error.failed, error.unknown) == ((), (), ("orders",))
    assert error.maybe_delivered and error.retryable
    assert "HTTP 201" in str(error) and "may have been delivered" in str(error)


def test_an_unacknowledged_publish_is_sent_again_and_acknowledged(
    emulator: AblyEmulator, make_broadcast: Callable[..., Broadcast]
) -> None:
    emulator.reply_next(201, body=b"[]")
    receipt = make_broadcast(retries=1).channel("orders", "m")
    assert receipt.requests == 2
    assert [m.id for m in emulator.messages("orders")] == [f"{receipt.message_id}:0"]


@pytest.mark.parametrize(
    ("body", "content_type"),
    [(b"", JSON), (b"{}", JSON), (b"\x80", MSGPACK)],
)
def test_what_acknowledged_one_channel_still_does(
    emulator: AblyEmulator,
    make_broadcast: Callable[..., Broadcast],
    body: bytes,
    content_type: str,
) -> None:
    emulator.reply_next(201, body=body, content_type=content_type)  # b"\x80": msgpack's {}
    assert make_broadcast(retries=0).channel("orders", "m").channels == ("orders",)


def test_a_body_without_a_content_type_is_unreadable(
    emulator: AblyEmulator, make_broadcast: Callable[..., Broadcast]
) -> None:
    emulator.reply_next(201, body=b"{}", content_type=None)  # sent as application/octet-stream
    with pytest.raises(PublishError) as caught:
        make_broadcast(retries=0).channel("orders", "m")
    assert caught.value.unknown == ("orders",)
    assert "could not be read" in str(caught.value)
