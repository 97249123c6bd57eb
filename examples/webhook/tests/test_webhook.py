"""The webhook driver against a real HTTP receiver: wire format, retries, keep-alive, TLS."""

from __future__ import annotations

import asyncio
import json
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from broadcasting import (
    Broadcast,
    BroadcastError,
    ConfigurationError,
    PublishError,
    Receipt,
    Secret,
    installed_drivers,
)

import broadcasting_webhook
from broadcasting_webhook import (
    ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    BroadcastWebhookDriver,
    verify_signature,
)
from broadcasting_webhook.receiver import WebhookReceiver

MODES = ["sync", "async"]


def _config(url: str, secret: str | Secret, **options: Any) -> dict[str, Any]:
    return {
        "DRIVER": "webhook",
        "DRIVERS": {"webhook": {"url": url, "secret": secret, "retry_backoff": 0.01, **options}},
    }


@pytest.fixture
def broadcast(receiver: WebhookReceiver, secret: str) -> Iterator[Broadcast]:
    with Broadcast(_config(receiver.url, secret)) as b:
        yield b


def _publish(broadcast: Broadcast, mode: str, *args: Any) -> Receipt:
    if mode == "sync":
        return broadcast.channel(*args)
    return asyncio.run(broadcast.achannel(*args))


# -- the plugin and its discovery ---------------------------------------------------


def test_hook_broadcasting_connect(receiver: WebhookReceiver, secret: str) -> None:
    """The plugin's hook answers for 'webhook' only, building from the options."""
    driver = broadcasting_webhook.broadcasting_connect(
        name="webhook", options={"url": receiver.url, "secret": secret}
    )
    assert isinstance(driver, BroadcastWebhookDriver)
    assert driver.endpoint == receiver.base_url
    other = broadcasting_webhook.broadcasting_connect(name="pusher", options={"app_id": "1"})
    assert other is None


def test_found_through_its_entry_point(receiver: WebhookReceiver, secret: str) -> None:
    """Installed, the package is a driver: listed, importable by seed name, connectable."""
    info = {d.name: d for d in installed_drivers()}["webhook"]
    assert info.distribution == "broadcasting-webhook"
    assert info.module == "broadcasting_webhook"
    from broadcasting.drivers import BroadcastWebhookDriver as seed_name

    assert seed_name is BroadcastWebhookDriver
    with Broadcast(_config(receiver.url, secret)) as broadcast:
        assert isinstance(broadcast.driver(), BroadcastWebhookDriver)
        assert isinstance(broadcast.driver(BroadcastWebhookDriver), BroadcastWebhookDriver)


def test_cli_lists_the_driver_and_sends_through_it(
    receiver: WebhookReceiver, secret: str, tmp_path: Path
) -> None:
    """``broadcasting drivers`` lists it; ``broadcasting send`` delivers a signed request."""
    listed = subprocess.run(
        [sys.executable, "-m", "broadcasting", "drivers", "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    names = {d["name"]: d for d in json.loads(listed.stdout)}
    assert names["webhook"]["distribution"] == "broadcasting-webhook"
    config = tmp_path / "broadcast.py"
    options = _config(receiver.url, secret)["DRIVERS"]["webhook"]
    config.write_text(f"DRIVER = 'webhook'\nDRIVERS = {{'webhook': {options!r}}}\n")
    sent = subprocess.run(
        [
            sys.executable,
            "-m",
            "broadcasting",
            "send",
            '{"order": 7}',
            "-c",
            "orders",
            "-e",
            "shipped",
            "--config",
            str(config),
            "--json",
        ],
        capture_output=True,
        text=True,
    )
    assert sent.returncode == 0, sent.stderr
    assert json.loads(sent.stdout)["driver"] == "webhook"
    [event] = receiver.events
    assert (event["event"], event["channels"], event["data"]) == (
        "shipped",
        ["orders"],
        {"order": 7},
    )
    assert secret not in sent.stdout + sent.stderr


# -- what goes over the wire ----------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_request_format(
    broadcast: Broadcast, receiver: WebhookReceiver, secret: str, token: str, mode: str
) -> None:
    """One POST per publish: path with token, JSON body, signature, timestamp and id."""
    before = int(time.time())
    receipt = _publish(broadcast, mode, ["orders", "audit"], {"id": 42, "é": "ü"}, "shipped")
    [request] = receiver.requests
    assert request.status == 204
    assert request.path == f"/hooks/{token}"
    assert request.headers["Content-Type"] == "application/json; charset=utf-8"
    assert request.headers["User-Agent"].startswith("broadcasting-webhook/")
    body = json.loads(request.body)
    assert body == {
        "id": receipt.message_id,
        "timestamp": body["timestamp"],
        "event": "shipped",
        "channels": ["orders", "audit"],
        "data": {"id": 42, "é": "ü"},
    }
    assert before <= body["timestamp"] <= time.time()
    assert request.headers[ID_HEADER] == receipt.message_id
    assert abs(int(request.headers[TIMESTAMP_HEADER]) - time.time()) < 5
    assert request.headers[SIGNATURE_HEADER].startswith("sha256=")
    assert verify_signature(secret, request.body, request.headers) == body
    assert "é".encode() in request.body  # UTF-8, not \\u escapes
    assert receipt.requests == 1


def test_a_str_message_is_a_json_string(broadcast: Broadcast, receiver: WebhookReceiver) -> None:
    broadcast.channel("news", '{"not": "parsed"}', "headline")
    [event] = receiver.events
    assert event["data"] == '{"not": "parsed"}'


def test_payload_size_is_the_whole_body(receiver: WebhookReceiver, secret: str) -> None:
    """max_payload_bytes limits the request body, envelope included."""
    with Broadcast(_config(receiver.url, secret, max_payload_bytes=2048)) as broadcast:
        driver = broadcast.driver()
        assert driver.limits.max_payload_bytes == 2048
        broadcast.channel("c", "x" * 1900)
        [request] = receiver.requests
        with pytest.raises(BroadcastError, match="2048"):
            broadcast.channel("c", "x" * 2000)
        assert len(receiver.requests) == 1
        assert len(request.body) < 2048


# -- failures, retries ------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_server_errors_are_retried_with_the_same_body_and_id(
    broadcast: Broadcast, receiver: WebhookReceiver, secret: str, mode: str
) -> None:
    """500 then 503 then success: three requests, one delivery, one id, fresh signatures."""
    receiver.fail_next(500, 503)
    receipt = _publish(broadcast, mode, "orders", {"n": 1}, "created")
    assert receipt.requests == 3
    requests = receiver.requests
    assert [r.status for r in requests] == [500, 503, 204]
    assert len({r.body for r in requests}) == 1
    assert {r.headers[ID_HEADER] for r in requests} == {receipt.message_id}
    assert all(verify_signature(secret, r.body, r.headers) for r in requests)
    assert len(receiver.events) == 1


@pytest.mark.parametrize(
    ("status", "retryable"), [(500, True), (502, True), (429, True), (408, True), (400, False)]
)
def test_status_mapping(
    receiver: WebhookReceiver, secret: str, status: int, retryable: bool
) -> None:
    """Retryable statuses are tried retries+1 times; others fail at once. Always PublishError."""
    receiver.fail_next(*[status] * 3)
    with (
        Broadcast(_config(receiver.url, secret, retries=2)) as broadcast,
        pytest.raises(PublishError) as info,
    ):
        broadcast.channel("orders", {"n": 1})
    error = info.value
    assert (error.status, error.retryable, error.driver) == (status, retryable, "webhook")
    assert len(receiver.requests) == (3 if retryable else 1)
    assert "scripted failure" in str(error)  # the receiver's answer helps debugging
    assert receiver.base_url in str(error)


def test_a_wrong_secret_is_refused_and_not_retried(receiver: WebhookReceiver, token: str) -> None:
    wrong = "whsec-this-is-not-the-secret"
    with (
        Broadcast(_config(receiver.url, wrong, retries=3)) as broadcast,
        pytest.raises(PublishError) as info,
    ):
        broadcast.channel("orders", {"n": 1})
    assert (info.value.status, info.value.retryable) == (401, False)
    assert len(receiver.requests) == 1
    assert receiver.events == []
    for text in (str(info.value), repr(info.value)):
        assert wrong not in text
        assert token not in text


@pytest.mark.parametrize("mode", MODES)
def test_connection_refused_is_retryable(
    closed_url: str, secret: str, token: str, mode: str
) -> None:
    with (
        Broadcast(_config(closed_url, secret, retries=1)) as broadcast,
        pytest.raises(PublishError) as info,
    ):
        _publish(broadcast, mode, "orders", {"n": 1})
    assert info.value.status is None
    assert info.value.retryable is True
    assert "ConnectionRefusedError" in str(info.value)
    assert token not in str(info.value)


def test_a_slow_receiver_times_out(receiver: WebhookReceiver, secret: str) -> None:
    receiver.delay = 1.0
    started = time.monotonic()
    config = _config(receiver.url, secret, timeout=0.2, retries=0)
    with Broadcast(config) as broadcast, pytest.raises(PublishError) as info:
        broadcast.channel("orders", {"n": 1})
    assert time.monotonic() - started < 0.9
    assert info.value.retryable is True
    assert info.value.status is None


def test_async_retries_do_not_block_the_event_loop(receiver: WebhookReceiver, secret: str) -> None:
    """While achannel waits between retries, other tasks on the loop keep running."""
    receiver.fail_next(503, 503)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.005)
            ticks += 1

    async def main() -> Receipt:
        config = _config(receiver.url, secret, retry_backoff=0.1, retry_max_backoff=0.1)
        async with Broadcast(config) as broadcast:
            task = asyncio.create_task(ticker())
            try:
                return await broadcast.achannel("orders", {"n": 1})
            finally:
                task.cancel()

    receipt = asyncio.run(main())
    assert receipt.requests == 3
    assert ticks >= 3


# -- connections ---------------------------------------------------------------------------


def test_keep_alive_reuses_one_connection(broadcast: Broadcast, receiver: WebhookReceiver) -> None:
    for n in range(5):
        broadcast.channel("orders", {"n": n})
    assert len({r.client for r in receiver.requests}) == 1
    assert len(receiver.events) == 5


def test_a_connection_dropped_while_idle_is_replaced(
    broadcast: Broadcast, receiver: WebhookReceiver
) -> None:
    """The server closes each connection after answering, without saying so."""
    receiver.keep_alive = False
    receipts = [broadcast.channel("orders", {"n": n}) for n in range(4)]
    assert [e["data"]["n"] for e in receiver.events] == [0, 1, 2, 3]  # each exactly once
    assert len({r.client for r in receiver.requests if r.status == 204}) == 4
    assert all(r.requests >= 1 for r in receipts)


def test_close_closes_connections_and_the_next_publish_reconnects(
    broadcast: Broadcast, receiver: WebhookReceiver
) -> None:
    broadcast.channel("orders", {"n": 1})
    broadcast.driver().close()
    broadcast.channel("orders", {"n": 2})
    assert len({r.client for r in receiver.requests}) == 2


# -- TLS --------------------------------------------------------------------------------


def test_https_with_a_private_ca(
    tls_receiver: WebhookReceiver, tls_ca: tuple[ssl.SSLContext, str], secret: str
) -> None:
    assert tls_receiver.url.startswith("https://")
    with Broadcast(_config(tls_receiver.url, secret, ca_file=tls_ca[1])) as broadcast:
        receipt = broadcast.channel("secure", {"ok": True}, "tls")
        asyncio.run(broadcast.achannel("secure", {"ok": 2}, "tls"))
    assert receipt.requests == 1
    assert [e["data"] for e in tls_receiver.events] == [{"ok": True}, {"ok": 2}]


def test_an_untrusted_certificate_is_not_retried(
    tls_receiver: WebhookReceiver, secret: str
) -> None:
    with (
        Broadcast(_config(tls_receiver.url, secret, retries=3)) as broadcast,
        pytest.raises(PublishError, match="not trusted") as info,
    ):
        broadcast.channel("secure", {"ok": True})
    assert info.value.retryable is False
    assert tls_receiver.events == []


# -- configuration ------------------------------------------------------------------------


def test_secret_may_be_a_secret_object(receiver: WebhookReceiver, secret: str) -> None:
    with Broadcast(_config(receiver.url, Secret(secret))) as broadcast:
        broadcast.channel("orders", {"n": 1})
    assert len(receiver.events) == 1


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"url": "http://127.0.0.1/", "ca_file": __file__}, "ca_file"),
        ({"url": "http://127.0.0.1/#frag", "timeout": float("nan")}, "timeout"),
        ({"url": "http://127.0.0.1/", "retry_backoff": -1}, "retry_backoff"),
    ],
)
def test_more_configuration_errors(options: Mapping[str, Any], key: str, secret: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        Broadcast({"DRIVERS": {"webhook": {"secret": secret, **options}}}).driver("webhook")
    assert info.value.key == key
    assert secret not in str(info.value)


def test_repr_shows_the_endpoint_only(receiver: WebhookReceiver, secret: str, token: str) -> None:
    with Broadcast(_config(receiver.url + "?sig=qs-token-123", secret)) as broadcast:
        driver = broadcast.driver()
        text = repr(driver)
        assert text == f"<BroadcastWebhookDriver driver='webhook' endpoint='{receiver.base_url}'>"
        for hidden in (secret, token, "qs-token-123"):
            assert hidden not in text
