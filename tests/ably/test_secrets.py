"""The API key never shows: not in repr, not in any error, not in any log line at DEBUG.

Publishes go to the local emulator (Ably cannot run here) through the real SDK,
httpx and TLS, with every logger recording at DEBUG.
"""

from __future__ import annotations

import base64
import logging
from collections import deque
from collections.abc import Callable

import pytest

from broadcasting import Broadcast, BroadcastError, ConfigurationError, PublishError
from broadcasting.plugin import Secret
from broadcasting_ably import BroadcastAblyDriver
from broadcasting_ably._settings import parse_settings
from servers.ably_emulator import TEST_KEY, WRONG_KEY, AblyEmulator


def _forms(key: str) -> list[str]:
    """Every form in which a key could leak: whole, its secret, Basic credentials."""
    return [key, key.split(":", 1)[1], base64.b64encode(key.encode()).decode()]


def _assert_clean(text: str, *keys: str) -> None:
    for key in keys:
        for form in _forms(key):
            assert form not in text, f"a form of the key leaked: {text[:300]}"


@pytest.fixture
def every_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Capture every logger (ably, httpx, httpcore, hpack, h2, broadcasting) at DEBUG."""
    caplog.set_level(logging.DEBUG)
    for name in ("ably", "httpx", "httpcore", "hpack", "h2", "broadcasting"):
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


def test_nothing_secret_in_errors_or_debug_logs(
    emulator: AblyEmulator,
    make_broadcast: Callable[..., Broadcast],
    every_log: pytest.LogCaptureFixture,
) -> None:
    texts: list[str] = []
    good = make_broadcast()
    ably = good.driver(BroadcastAblyDriver)
    texts += [repr(good), repr(ably), repr(ably.driver), repr(ably.driver.settings)]
    texts.append(str(good.channel(["a", "b"], {"m": 1})))

    emulator.fail_next(500, 50000)
    emulator.slow_next(1.0)
    texts.append(str(good.driver().with_options(timeout=0.3).channel("c", "m")))

    failures: list[BroadcastError] = []
    with pytest.raises(PublishError) as wrong:
        make_broadcast(key=WRONG_KEY).channel(["a", "b"], "m")
    failures.append(wrong.value)
    emulator.fail_next(429, 42911, times=3)  # the first attempt and two retries
    with pytest.raises(PublishError) as limited:
        good.channel("c", "m")
    failures.append(limited.value)
    emulator.slow_next(1.0)
    with pytest.raises(PublishError) as slow:
        make_broadcast(timeout=0.2, retries=0).channel("c", "m")
    failures.append(slow.value)
    emulator.drop_next()
    with pytest.raises(PublishError) as dropped:
        make_broadcast(retries=0).channel(["c", "d"], "m")
    failures.append(dropped.value)
    emulator.fail_next(500, 50000, f"echo {TEST_KEY}")
    with pytest.raises(PublishError) as echoed:
        make_broadcast(retries=0).channel("c", "m")
    failures.append(echoed.value)

    assert emulator.faults == deque()  # each fault met the publish it was meant for
    assert [type(e.__cause__) for e in failures] == [PublishError] * 5
    for error in failures:
        texts += [str(error), repr(error), repr(error.args), repr(error.causes)]
        cause = error.__cause__ or error.__context__
        texts += [repr(cause), str(cause), repr(vars(error))]
    records = every_log.records
    assert any(r.name.startswith("httpx") for r in records)  # the SDK's stack did log
    texts += [r.getMessage() for r in records]
    texts += [every_log.text]
    _assert_clean("\n".join(texts), TEST_KEY, WRONG_KEY)


@pytest.mark.parametrize(
    "bad",
    [
        "api:key",  # the seed's placeholder
        "no-colon-at-all",
        "appid.keyid",
        "appid:K3ySecretX",
        "appid.keyid:S3cr3tPart:extra",
        "appid.keyid: spaced S3cr3t",
        "",
    ],
)
@pytest.mark.parametrize("name", ["secret", "key"])
def test_a_badly_shaped_key_is_named_not_echoed(name: str, bad: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        parse_settings({name: bad})
    error = caught.value
    assert error.key == name
    text = str(error)
    assert "appId.keyId:keySecret" in text or "missing" in text
    for part in {bad, *bad.replace(".", ":").split(":")} - {""}:
        if len(part) > 3:
            assert part not in text


def test_bad_key_through_broadcast_fails_before_any_request(emulator: AblyEmulator) -> None:
    config = {"DRIVER": "ably", "DRIVERS": {"ably": {"secret": "api:key"}}}
    with pytest.raises(ConfigurationError, match="'secret'"), Broadcast(config) as broadcast:
        broadcast.channel("c", "m")
    assert emulator.requests == []


def test_the_key_is_kept_as_a_secret() -> None:
    settings = parse_settings({"key": Secret(TEST_KEY), "client_id": "me"})
    assert isinstance(settings.key, Secret)
    assert settings.key.reveal() == TEST_KEY
    _assert_clean(repr(settings) + str(settings) + f"{settings}", TEST_KEY)
    driver = BroadcastAblyDriver(settings)
    _assert_clean(repr(driver) + repr(driver.limits), TEST_KEY)
    # nor in the driver's own attributes, private ones included (the SDK clients aside)
    _assert_clean(repr(vars(driver)) + repr(vars(driver._scrub)), TEST_KEY)


def test_hpack_debug_log_of_http2_header_blocks_is_dropped(
    emulator: AblyEmulator, broadcast: Broadcast, every_log: pytest.LogCaptureFixture
) -> None:
    """Over HTTP/2 (Ably speaks it; the emulator does not) hpack logs each encoded header
    block at DEBUG, Authorization included: Huffman-coded, but decodable. The driver
    drops that record. Shown with h2's own client connection, as httpx uses it."""
    import h2.config
    import h2.connection
    import hpack

    broadcast.channel("c", "m")  # the first publish installs the filter
    credentials = base64.b64encode(TEST_KEY.encode()).decode()
    headers = [
        (":method", "POST"),
        (":scheme", "https"),
        (":authority", "main.realtime.ably.net"),
        (":path", "/messages"),
        ("authorization", f"Basic {credentials}"),
    ]

    def logged_blocks() -> list[bytes]:
        return [
            r.args[0]
            for r in every_log.records
            if r.name == "hpack.hpack"
            and str(r.msg).startswith("Encoded header block")
            and isinstance(r.args, tuple)
        ]

    logger = logging.getLogger("hpack.hpack")
    ours = [f for f in logger.filters if type(f).__name__ == "_DropEncodedHeaderBlocks"]
    assert len(ours) == 1

    # without the filter the key is recoverable from the DEBUG log
    logger.removeFilter(ours[0])
    try:
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()
        conn.send_headers(1, headers)
    finally:
        logger.addFilter(ours[0])
    (block,) = logged_blocks()
    decoded = dict(hpack.Decoder().decode(block))
    assert decoded["authorization"] == f"Basic {credentials}"

    every_log.clear()
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    conn.send_headers(1, headers)
    assert logged_blocks() == []
    _assert_clean(every_log.text, TEST_KEY)


def test_a_key_echoed_by_the_server_is_scrubbed(
    emulator: AblyEmulator, make_broadcast: Callable[..., Broadcast]
) -> None:
    basic = base64.b64encode(TEST_KEY.encode()).decode()
    emulator.fail_next(401, 40101, f"Invalid key {TEST_KEY} (Basic {basic})")
    with pytest.raises(PublishError) as caught:
        make_broadcast().channel("c", "m")
    assert "Invalid key ********" in str(caught.value)
    _assert_clean(str(caught.value), TEST_KEY)
