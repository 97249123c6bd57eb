"""The `ably` options: what is accepted, what the SDK gets, what is refused (by key name).

The delivery options (``retries``, ``batch``...) belong to the core, which reads
them from the same ``DRIVERS['ably']`` entry (``Broadcaster.delivery``); the driver
sees only each send's budget (``Batch.budget``), which caps the SDK's fallback hosts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from broadcasting import Broadcast, ConfigurationError
from broadcasting.plugin import Batch, DeliveryOptions, Retry
from broadcasting_ably import BroadcastAblyDriver
from broadcasting_ably._settings import parse_settings
from servers.ably_emulator import TEST_KEY

if TYPE_CHECKING:
    from broadcasting import Broadcaster


def _connect(**options: Any) -> Broadcaster[BroadcastAblyDriver]:
    config = {"DRIVER": "ably", "DRIVERS": {"ably": {"secret": TEST_KEY, **options}}}
    return Broadcast(config).driver(BroadcastAblyDriver)


def test_defaults() -> None:
    settings = parse_settings({"secret": TEST_KEY})
    assert settings.max_payload_bytes == 65536
    # Ably's default endpoint has fallback hosts: the SDK may try as many as the budget
    assert settings.hosts(3) == 3
    assert settings.sdk_options(3) == {
        "tls": True,
        "use_binary_protocol": True,
        "idempotent_rest_publishing": True,
        "http_max_retry_count": 3,
    }


def test_every_option() -> None:
    settings = parse_settings(
        {
            "key": TEST_KEY,
            "client_id": "server-1",
            "endpoint": "eu.example.com",
            "port": 8080,
            "tls_port": 8443,
            "tls": True,
            "http_open_timeout": 1.5,
            "http_request_timeout": 4,
            "use_binary_protocol": False,
            "max_payload_bytes": 256 * 1024,
        }
    )
    assert settings.max_payload_bytes == 262144
    assert settings.hosts(5) == 1  # a host name has no fallback hosts: the core retries
    assert settings.sdk_options(1) == {
        "tls": True,
        "use_binary_protocol": False,
        "idempotent_rest_publishing": True,
        "http_max_retry_count": 1,
        "client_id": "server-1",
        "endpoint": "eu.example.com",
        "port": 8080,
        "tls_port": 8443,
        "http_open_timeout": 1.5,
        "http_request_timeout": 4.0,
    }


def test_single_timeout_sets_both_and_specific_ones_win() -> None:
    both = parse_settings({"secret": TEST_KEY, "timeout": 2}).sdk_options(2)
    assert (both["http_open_timeout"], both["http_request_timeout"]) == (2.0, 2.0)
    mixed = parse_settings({"secret": TEST_KEY, "timeout": 2, "http_open_timeout": 0.5})
    assert (mixed.http_open_timeout, mixed.http_request_timeout) == (0.5, 2.0)


@pytest.mark.parametrize("old", ["environment", "rest_host"])
def test_older_host_options_are_endpoint(old: str, caplog: pytest.LogCaptureFixture) -> None:
    from ably import AblyRest

    settings = parse_settings({"secret": TEST_KEY, old: "sandbox"})
    assert settings.endpoint == "sandbox"
    client = AblyRest(key=TEST_KEY, **settings.sdk_options(3))
    assert client.options.get_host() == "sandbox.realtime.ably.net"
    assert "deprecated" not in caplog.text  # no SDK warning on every connect


def test_the_sdk_tries_as_many_hosts_as_the_send_may_take_requests() -> None:
    """A send's ``Batch.budget`` (1 + the retries left) caps the hosts the SDK tries:
    one client per budget value, reused, so a failover never overdraws the core's budget."""
    driver = _connect(retries=1).driver
    clients = {budget: driver._clients.get(budget, aio=False) for budget in (1, 2, 3)}
    assert [len(c.options.get_hosts()) for c in clients.values()] == [1, 2, 3]
    assert [c.options.http_max_retry_count for c in clients.values()] == [1, 2, 3]
    assert driver._clients.get(2, aio=False) is clients[2]
    assert Batch((), budget=2).budget == 2  # what the core hands each send
    driver.close()

    custom = parse_settings({"secret": TEST_KEY, "endpoint": "127.0.0.1"})
    assert not custom.has_fallback_hosts
    assert custom.hosts(3) == 1

    listed = parse_settings(
        {"secret": TEST_KEY, "endpoint": "a.example.com", "fallback_hosts": ["b.example.com"]}
    )
    assert listed.has_fallback_hosts
    assert listed.hosts(3) == 3
    assert listed.sdk_options(3)["http_max_retry_count"] == 3


def test_the_sdk_clients_count_their_requests() -> None:
    """The request hook that counts fallback-host re-sends is on both SDK clients.

    If a new SDK moved its httpx client, the hook would be missing and re-sends
    would be counted as one request: this test would say so.
    """
    import asyncio

    driver = _connect().driver
    sync = driver._clients.get(1, aio=False)

    async def async_hooks() -> list[object]:
        client = driver._clients.get(1, aio=True)
        hooks: list[object] = client.http._Http__client.event_hooks["request"]
        return hooks

    assert [h.__name__ for h in sync.http._HttpSync__client.event_hooks["request"]] == ["_count"]
    assert [h.__name__ for h in asyncio.run(async_hooks())] == ["_acount"]  # type: ignore[attr-defined]
    driver.close()


def test_delivery_options_are_the_cores() -> None:
    broadcaster = _connect(
        retries=5, retry_backoff=0.2, retry_max_backoff=3, batch=False, batch_in_flight=9
    )
    assert broadcaster.delivery == DeliveryOptions(Retry(5, 0.2, 3.0), False, False, 9)
    assert _connect().delivery == DeliveryOptions()  # retries 2, batching on, 4 in flight
    assert not hasattr(broadcaster.driver, "delivery")  # the driver sees Batch.budget only
    caps = BroadcastAblyDriver.capabilities
    assert (caps.channels_per_request, caps.batch_channels, caps.deduplicates) == (100, 100, True)
    assert caps.batch_bytes is not None and caps.batch_bytes < 2 * 1024 * 1024


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("retries", -1),
        ("retry_backoff", "fast"),
        ("batch", "yes"),
        ("batch_in_flight", 0),
        ("at_least_once", 1),
    ],
)
def test_bad_delivery_options_name_the_key(key: str, value: object) -> None:
    with pytest.raises(ConfigurationError) as caught:
        _connect(**{key: value})
    assert (caught.value.driver, caught.value.key) == ("ably", key)
    assert TEST_KEY not in str(caught.value)


def test_the_old_batching_option_says_what_it_became() -> None:
    with pytest.raises(ConfigurationError) as caught:
        parse_settings({"secret": TEST_KEY, "batch_publishes": False})
    assert caught.value.key == "batch_publishes"
    assert "'batch'" in str(caught.value)


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({}, "secret"),
        ({"secret": TEST_KEY, "key": TEST_KEY}, "key"),
        ({"secret": 42}, "secret"),
        ({"secret": TEST_KEY, "cluster": "eu"}, "cluster"),
        ({"secret": TEST_KEY, "app_id": "1"}, "app_id"),
        ({"secret": TEST_KEY, "client_id": ""}, "client_id"),
        ({"secret": TEST_KEY, "client_id": "*"}, "client_id"),
        ({"secret": TEST_KEY, "endpoint": "x", "environment": "y"}, "environment"),
        ({"secret": TEST_KEY, "endpoint": 3}, "endpoint"),
        ({"secret": TEST_KEY, "port": 0}, "port"),
        ({"secret": TEST_KEY, "tls_port": 70000}, "tls_port"),
        ({"secret": TEST_KEY, "tls_port": "443"}, "tls_port"),
        ({"secret": TEST_KEY, "tls": "yes"}, "tls"),
        ({"secret": TEST_KEY, "tls": False}, "tls"),
        ({"secret": TEST_KEY, "timeout": 0}, "timeout"),
        ({"secret": TEST_KEY, "http_request_timeout": -1}, "http_request_timeout"),
        ({"secret": TEST_KEY, "http_open_timeout": True}, "http_open_timeout"),
        ({"secret": TEST_KEY, "use_binary_protocol": 1}, "use_binary_protocol"),
        ({"secret": TEST_KEY, "max_payload_bytes": 0}, "max_payload_bytes"),
        ({"secret": TEST_KEY, "max_payload_bytes": 1.5}, "max_payload_bytes"),
        ({"secret": TEST_KEY, "fallback_hosts": "b.example.com"}, "fallback_hosts"),
        # parse_settings never sees the core's options: given to it, they are unknown
        ({"secret": TEST_KEY, "retries": 2}, "retries"),
    ],
)
def test_bad_options_name_the_key(options: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        parse_settings(options)
    assert caught.value.key == key
    assert caught.value.driver == "ably"
    assert TEST_KEY not in str(caught.value)
