"""The webhook driver against a real HTTP receiver: discovery, wire format, keep-alive, TLS.

Failures, retries and split fan-outs are in test_outcomes.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from broadcasting import Broadcast, ConfigurationError, PayloadTooLargeError, PublishError, Receipt
from broadcasting.plugin import Capabilities, Message, Secret, installed_drivers

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


def test_found_through_its_entry_point(receiver: WebhookReceiver, secret: str) -> None:
    """The entry point names the Driver class: listed, importable by seed name, connectable."""
    info = {d.name: d for d in installed_drivers()}["webhook"]
    assert info.distribution == "broadcasting-webhook"
    assert info.module == "broadcasting_webhook:BroadcastWebhookDriver"
    from broadcasting.drivers import BroadcastWebhookDriver as seed_name

    assert seed_name is BroadcastWebhookDriver
    assert not hasattr(broadcasting_webhook, "broadcasting_connect")  # no hook needed
    with Broadcast(_config(receiver.url, secret)) as broadcast:
        broadcaster = broadcast.driver()
        assert isinstance(broadcaster.driver, BroadcastWebhookDriver)
        assert broadcast.driver(BroadcastWebhookDriver) is broadcaster
        assert broadcaster.driver.endpoint == receiver.base_url


def test_delivery_options_are_the_cores(receiver: WebhookReceiver, secret: str) -> None:
    """``retries`` & co. reach the core (the broadcaster's delivery), never from_config."""
    config = _config(receiver.url, secret, retries=5, at_least_once=True, batch=False)
    with Broadcast(config) as broadcast:
        broadcaster = broadcast.driver()
        assert broadcaster.delivery.retry.retries == 5
        assert broadcaster.delivery.retry.backoff == 0.01
        assert broadcaster.delivery.at_least_once is True
        assert broadcaster.driver.capabilities == Capabilities(
            channels_per_request=100, deduplicates=False
        )
    with pytest.raises(ConfigurationError) as info:
        BroadcastWebhookDriver.from_config({"url": receiver.url, "secret": secret, "retries": 1})
    assert info.value.key == "retries"  # only the core knows it


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
    """One POST per publish: path with token, JSON body, signature, timestamp and ids."""
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
        "message_id": receipt.message_id,
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
        driver = broadcast.driver().driver
        assert driver.limits.max_payload_bytes == 2048
        broadcast.channel("c", "x" * 1900)
        [request] = receiver.requests
        with pytest.raises(PayloadTooLargeError, match="2048"):
            broadcast.channel("c", "x" * 2000)
        assert len(receiver.requests) == 1
        assert len(request.body) < 2048


def test_payload_size_of_a_split_fan_out_is_its_largest_request(
    receiver: WebhookReceiver, secret: str
) -> None:
    """Each request lists only its own channels: the largest body is what is limited."""
    channels = [f"channel-{n:03d}" for n in range(30)]
    with Broadcast(_config(receiver.url, secret, channels_per_request=10)) as broadcast:
        driver = broadcast.driver().driver
        assert isinstance(driver, BroadcastWebhookDriver)
        receipt = broadcast.channel(channels, {"n": 1}, "fan")
        message = Message(tuple(channels), "fan", {"n": 1}, '{"n":1}', receipt.message_id)
        largest = max(len(r.body) for r in receiver.requests)
        assert driver.payload_size(message) == largest
        everything = driver.body(message, message.channels, int(time.time()))
        assert largest < len(everything)


# -- connections ---------------------------------------------------------------------------


def test_keep_alive_reuses_one_connection(broadcast: Broadcast, receiver: WebhookReceiver) -> None:
    for n in range(5):
        broadcast.channel("orders", {"n": n})
    assert len({r.client for r in receiver.requests}) == 1
    assert len(receiver.events) == 5


def test_a_connection_dropped_while_idle_is_replaced(
    broadcast: Broadcast, receiver: WebhookReceiver
) -> None:
    """The server closes each connection after answering, without saying so.

    The driver notices before reusing it and opens a new one: no request is
    written to a dead connection (which would leave its outcome unknown).
    """
    receiver.keep_alive = False
    receipts = []
    for n in range(4):
        receipts.append(broadcast.channel("orders", {"n": n}))
        assert receiver.wait_closed(n + 1)  # the server has hung up before the next publish
    assert [e["data"]["n"] for e in receiver.events] == [0, 1, 2, 3]  # each exactly once
    assert len({r.client for r in receiver.requests}) == 4
    assert [r.status for r in receiver.requests] == [204] * 4
    assert [r.requests for r in receipts] == [1, 1, 1, 1]


def test_close_closes_connections_and_the_next_publish_reconnects(
    broadcast: Broadcast, receiver: WebhookReceiver
) -> None:
    broadcast.channel("orders", {"n": 1})
    broadcast.driver().close()
    broadcast.channel("orders", {"n": 2})
    assert len({r.client for r in receiver.requests}) == 2


def _publish_in_a_child(broadcast: Broadcast) -> str:
    """Fork, publish once in the child, as a pre-forked worker would: what it reported."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report through the pipe, then leave at once
        said = b"ok"
        try:
            broadcast.channel("orders", {"n": "child"})
        except BaseException as exc:
            said = repr(exc).encode("utf-8", "replace")
        finally:
            os.write(write_fd, said)
            os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        answer = pipe.read().decode("utf-8", "replace")
    os.waitpid(pid, 0)
    return answer


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork() only exists on POSIX")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_a_forked_child_never_writes_on_the_parents_connection(
    receiver: WebhookReceiver,
    tls_receiver: WebhookReceiver,
    tls_ca: tuple[ssl.SSLContext, str],
    secret: str,
    tls: bool,
) -> None:
    """A module-level Broadcast that published before a fork (gunicorn --preload).

    The child opens a connection of its own instead of writing on the parent's
    kept-alive one (over TLS that would break the parent's session, and its next
    publish would end ``unknown``); the parent keeps reusing its own afterwards.
    """
    server = tls_receiver if tls else receiver
    options = {"ca_file": tls_ca[1]} if tls else {}
    with Broadcast(_config(server.url, secret, retries=0, **options)) as broadcast:
        broadcast.channel("orders", {"n": "before"})
        assert _publish_in_a_child(broadcast) == "ok"
        broadcast.channel("orders", {"n": "after"})  # raised PublishError (unknown) over TLS
    requests = server.requests
    assert [r.event["data"]["n"] for r in requests if r.event] == ["before", "child", "after"]
    parent, child, after = (r.client for r in requests)
    assert child != parent, "the child wrote its request on the parent's kept-alive connection"
    assert after == parent, "the parent lost its kept-alive connection to the child"


# -- TLS --------------------------------------------------------------------------------


def test_https_with_a_private_ca(
    tls_receiver: WebhookReceiver, tls_ca: tuple[ssl.SSLContext, str], secret: str
) -> None:
    """Works over TLS, and a kept-alive TLS connection is reused (not taken for a dead one)."""
    assert tls_receiver.url.startswith("https://")
    with Broadcast(_config(tls_receiver.url, secret, ca_file=tls_ca[1])) as broadcast:
        receipt = broadcast.channel("secure", {"ok": True}, "tls")
        asyncio.run(broadcast.achannel("secure", {"ok": 2}, "tls"))
        broadcast.channel("secure", {"ok": 3}, "tls")
    assert receipt.requests == 1
    assert [e["data"] for e in tls_receiver.events] == [{"ok": True}, {"ok": 2}, {"ok": 3}]
    assert len({r.client for r in tls_receiver.requests}) == 1


def test_an_untrusted_certificate_is_not_retried(
    tls_receiver: WebhookReceiver, secret: str
) -> None:
    with (
        Broadcast(_config(tls_receiver.url, secret, retries=3)) as broadcast,
        pytest.raises(PublishError, match="not trusted") as info,
    ):
        broadcast.channel("secure", {"ok": True})
    assert info.value.retryable is False
    assert info.value.failed == ("secure",)
    assert info.value.requests == 1
    assert tls_receiver.requests == []


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
        ({"url": "http://127.0.0.1/", "at_least_once": "yes"}, "at_least_once"),
        ({"url": "http://127.0.0.1/", "channels_per_request": 0}, "channels_per_request"),
        ({"url": "http://127.0.0.1/", "channels_per_request": True}, "channels_per_request"),
        ({"url": "http://127.0.0.1/", "receiver_deduplicates": 1}, "receiver_deduplicates"),
    ],
)
def test_more_configuration_errors(options: Mapping[str, Any], key: str, secret: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        Broadcast({"DRIVERS": {"webhook": {"secret": secret, **options}}}).driver("webhook")
    assert info.value.key == key
    assert secret not in str(info.value)


def test_repr_shows_the_endpoint_only(receiver: WebhookReceiver, secret: str, token: str) -> None:
    with Broadcast(_config(receiver.url + "?sig=qs-token-123", secret)) as broadcast:
        driver = broadcast.driver().driver
        text = repr(driver)
        assert text == f"<BroadcastWebhookDriver driver='webhook' endpoint='{receiver.base_url}'>"
        for hidden in (secret, token, "qs-token-123"):
            assert hidden not in text
