"""Second review of the Ably driver: what a 2xx answer proves, what a failing query's
traceback holds, and the shape of ``endpoint`` and ``fallback_hosts``.

The driver, the ``ably`` SDK and httpx are real; the emulator stands in for Ably (no
Ably server can run here) and answers what a test tells it to (``reply_next``), after
storing the messages: a channel left *unknown* may really have been delivered.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from broadcasting import Broadcast, ConfigurationError, PublishError, QueryError
from broadcasting_ably._settings import parse_settings
from servers.ably_emulator import TEST_KEY, AblyEmulator
from servers.secret_scan import chain, showing

KEY_SECRET = TEST_KEY.split(":", 1)[1]
ONE, TWO = ("orders",), ("a", "b")


def _unknown(error: PublishError, channels: tuple[str, ...]) -> None:
    """Every channel unknown: maybe delivered, none certainly refused."""
    assert (error.delivered, error.failed, error.unknown) == ((), (), channels)
    assert error.maybe_delivered


# -- 1. a 2xx answer acknowledges only the channels it gives a message id or serial
@pytest.mark.parametrize(
    ("channels", "status", "body"),
    [
        (ONE, 201, b'{"ok":false}'),
        (ONE, 201, b'{"channel":"orders"}'),  # names it, acknowledges nothing
        (TWO, 201, b"{}"),
        (TWO, 204, b""),
        (TWO, 200, b'{"status":"pending"}'),
        (TWO, 201, b'{"successCount":2,"failureCount":0}'),  # a BatchResult without results
    ],
)
def test_a_2xx_answer_without_an_acknowledgement_is_unknown(
    emulator: AblyEmulator,
    make_broadcast: Callable[..., Broadcast],
    channels: tuple[str, ...],
    status: int,
    body: bytes,
) -> None:
    """These were all "delivered" (a Receipt): the answer proves nothing either way."""
    emulator.reply_next(status, body=body)
    with pytest.raises(PublishError) as caught:
        make_broadcast(retries=0, use_binary_protocol=False).channel(list(channels), "m")
    error = caught.value
    _unknown(error, channels)
    assert error.retryable  # safe: Ably drops a re-sent message id
    assert f"HTTP {status}" in str(error) and "may have been delivered" in str(error)
    assert KEY_SECRET not in str(error)


def test_an_unacknowledged_publish_is_sent_again_and_stored_once(
    emulator: AblyEmulator, make_broadcast: Callable[..., Broadcast]
) -> None:
    emulator.reply_next(201, {"ok": False})  # msgpack, as the SDK asks by default
    receipt = make_broadcast(retries=1).channel("orders", "m")
    assert receipt.requests == 2
    assert [m.id for m in emulator.messages("orders")] == [f"{receipt.message_id}:0"]


@pytest.mark.parametrize("batch_format", ["legacy", "result"])
def test_what_ably_really_answers_is_still_delivered(
    emulator: AblyEmulator, make_broadcast: Callable[..., Broadcast], batch_format: str
) -> None:
    """Ably's own answers: ``{channel, messageId}`` for one channel (its OpenAPI spec),
    a list of those or a BatchResult for several; serials alone (newer API versions)."""
    emulator.batch_format = batch_format
    broadcast = make_broadcast(retries=0)
    assert broadcast.channel("orders", "m").channels == ONE
    assert broadcast.channel(list(TWO), "m").channels == TWO
    emulator.reply_next(201, {"channel": "orders", "messageId": "x"})
    assert broadcast.channel("orders", "m").channels == ONE
    emulator.reply_next(201, {"serials": ["s1"]})
    assert broadcast.channel("orders", "m").channels == ONE
    # one channel's publish answered with no content: Ably's 2xx is the acknowledgement (the
    # SDK reads it so; which API versions answer so is not known here), never a batch's
    for status, body in ((201, b""), (201, b"{}"), (204, b"")):
        emulator.reply_next(status, body=body)
        assert broadcast.channel("orders", "m").channels == ONE


# -- 2. an error inside a 2xx is a refusal only with a 4xx status or code
@pytest.mark.parametrize(
    "answer",
    [
        {"error": "quota exceeded"},
        {"error": {"message": "odd"}},
        {"channel": "orders", "error": {"message": "odd", "statusCode": 200}},
        {"channel": "orders", "error": {"message": "odd", "code": 30000}},
    ],
)
def test_an_error_without_a_4xx_in_a_2xx_answer_is_unknown(
    emulator: AblyEmulator, make_broadcast: Callable[..., Broadcast], answer: dict[str, Any]
) -> None:
    """These were certain failures (failed, not retryable) though the message was stored."""
    emulator.reply_next(200, answer)
    with pytest.raises(PublishError) as caught:
        make_broadcast(retries=0).channel("orders", "m")
    _unknown(caught.value, ONE)
    assert caught.value.retryable
    assert len(emulator.messages("orders")) == 1


def test_a_batch_result_error_without_a_4xx_is_unknown_and_one_with_it_failed(
    emulator: AblyEmulator, make_broadcast: Callable[..., Broadcast]
) -> None:
    ok = {"channel": "a", "messageId": "m", "serials": ["s"]}
    unclear = {"channel": "b", "error": {"message": "odd"}}
    denied = {"channel": "c", "error": {"message": "no", "statusCode": 401, "code": 40160}}
    emulator.reply_next(
        201, {"successCount": 1, "failureCount": 2, "results": [ok, unclear, denied]}
    )
    with pytest.raises(PublishError) as caught:
        make_broadcast(retries=0).channel(["a", "b", "c"], "m")
    error = caught.value
    assert (error.delivered, error.failed, error.unknown) == (("a",), ("c",), ("b",))
    assert error.causes["c"].kind == "permission"


# -- 3. no frame of a failing query's traceback holds the SDK client (the key is in it)
def _sdk_objects(error: BaseException) -> list[str]:
    """Locals of any traceback frame in ``error``'s chain that are the SDK's objects."""
    found = []
    for exc in chain(error):
        tb = exc.__traceback__
        while tb is not None:
            frame = tb.tb_frame
            if frame.f_code.co_filename != __file__:
                for name, value in list(frame.f_locals.items()):
                    if type(value).__module__.split(".")[0] == "ably":
                        found.append(f"{frame.f_code.co_name}:{name}")
            tb = tb.tb_next
    return found


def _clean(error: BaseException) -> None:
    assert _sdk_objects(error) == []
    for secret in (TEST_KEY, KEY_SECRET):
        assert showing(error, secret, skip=__file__) == []


@pytest.mark.parametrize("refusal", ["answer", "per-target"])
def test_a_failing_terminate_user_keeps_the_keyed_client_out_of_the_traceback(
    emulator: AblyEmulator, broadcast: Broadcast, refusal: str
) -> None:
    if refusal == "answer":
        emulator.fail_next(500, 50000, "boom")
    else:  # Ably's BatchResult with the target refused: raised while reading the answer
        error = {"message": "no", "statusCode": 400, "code": 40000}
        result = {"target": "clientId:u1", "error": error}
        emulator.reply_next(201, {"successCount": 0, "failureCount": 1, "results": [result]})
    with pytest.raises(QueryError) as caught:
        broadcast.terminate_user("u1")
    _clean(caught.value)


async def test_a_failing_async_query_keeps_the_sdk_client_out_of_the_traceback(
    emulator: AblyEmulator, make_broadcast: Callable[..., Broadcast]
) -> None:
    broadcast = make_broadcast()
    try:
        emulator.fail_next(500, 50000, "boom")
        with pytest.raises(QueryError) as caught:
            await broadcast.aterminate_user("u1")
        _clean(caught.value)
        emulator.fail_next(500, 50000, "boom")
        with pytest.raises(QueryError) as members:
            await broadcast.amembers("presence:chat")
        _clean(members.value)
    finally:
        await broadcast.aclose()


def test_an_unreadable_query_answer_keeps_the_sdk_client_out_of_the_chain(
    emulator: AblyEmulator, broadcast: Broadcast
) -> None:
    """A proxy's HTML page: the SDK's decoding error (its traceback in the SDK's frames)
    is not chained to the QueryError."""
    emulator.html_next(502)
    with pytest.raises(QueryError) as caught:
        broadcast.members("presence:chat")
    _clean(caught.value)


# -- 4. endpoint and fallback_hosts: a host name or a routing policy, checked up front
@pytest.mark.parametrize(
    ("option", "value", "said"),
    [
        ("endpoint", "https://rest.ably.io", "has a scheme"),
        ("endpoint", "rest.ably.io:443", "has a port"),
        ("endpoint", "rest.ably.io/v2", "has a path"),
        ("endpoint", " main", "is no host name"),
        ("endpoint", "::1", "is no IPv6 address in brackets"),
        ("endpoint", "[2001:db8:1:2:3:4:5:6]", "without '::'"),
        ("endpoint", "my_env", "no routing policy"),
        ("rest_host", "https://rest.ably.io", "has a scheme"),
        ("environment", "sandbox:443", "has a port"),
        ("fallback_hosts", ["a.example.com", "https://b.example.com"], "has a scheme"),
        ("fallback_hosts", ["b.example.com:8443"], "has a port"),
        ("fallback_hosts", ["b example"], "is no host name"),
    ],
)
def test_a_misshapen_host_is_a_configuration_error_before_any_request(
    emulator: AblyEmulator, option: str, value: object, said: str
) -> None:
    """``https://rest.ably.io`` failed only at publish (a DNS error), ``rest.ably.io:443``
    with "the request's URL is invalid (a channel name this long ...)"."""
    with pytest.raises(ConfigurationError) as caught:
        parse_settings({"secret": TEST_KEY, option: value})
    assert (caught.value.driver, caught.value.key) == ("ably", option)
    assert said in str(caught.value)
    # through Broadcast, pointed at the emulator (where a publish would otherwise go)
    options = emulator.options(retries=0)
    if option != "fallback_hosts":
        del options["endpoint"]
    config = {"DRIVER": "ably", "DRIVERS": {"ably": {**options, option: value}}}
    with pytest.raises(ConfigurationError), Broadcast(config) as broadcast:
        broadcast.channel("orders", "m")
    assert emulator.requests == []


@pytest.mark.parametrize(
    ("value", "host"),
    [
        ("main", "main.realtime.ably.net"),
        ("nonprod:sandbox", "sandbox.realtime.ably-nonprod.net"),
        ("eu-central-1", "eu-central-1.realtime.ably.net"),
        ("rest.example.com", "rest.example.com"),
        ("127.0.0.1", "127.0.0.1"),
        ("localhost", "localhost"),
        ("[::1]", "[::1]"),
    ],
)
def test_well_shaped_endpoints_reach_the_sdk_as_given(value: str, host: str) -> None:
    from ably import AblyRest

    settings = parse_settings(
        {"secret": TEST_KEY, "endpoint": value, "fallback_hosts": ["b.example.com", "[::2]"]}
    )
    client = AblyRest(key=TEST_KEY, **settings.sdk_options(1))
    assert client.options.get_host() == host
