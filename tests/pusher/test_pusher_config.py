"""Configuration of the pusher driver: every key checked, secrets never shown.

No server is needed: nothing here makes a request.
"""

from __future__ import annotations

import base64
import logging
from typing import Any

import pytest

from broadcasting import Broadcast, ConfigurationError
from broadcasting.drivers import BroadcastPusherDriver
from broadcasting.plugin import Secret, installed_drivers
from broadcasting_pusher import PusherSettings, parse_settings

SECRET = "s3cr3t-do-not-show-8f2a"
MASTER = base64.b64encode(b"k" * 32).decode()
BASE = {"app_id": "1234567", "client": "app-key", "secret": SECRET}


def settings(**changes: Any) -> PusherSettings:
    return parse_settings({**BASE, **changes})


def config_error(**changes: Any) -> ConfigurationError:
    options = {**BASE, **changes}
    for key in [k for k, v in options.items() if v is ...]:
        del options[key]
    with pytest.raises(ConfigurationError) as info:
        parse_settings(options)
    assert SECRET not in str(info.value)
    return info.value


def test_entry_point_is_installed() -> None:
    info = {i.name: i for i in installed_drivers()}["pusher"]
    assert info.distribution == "broadcasting-pusher"
    assert info.module == "broadcasting_pusher:BroadcastPusherDriver"
    import broadcasting_pusher

    assert not hasattr(broadcasting_pusher, "broadcasting_connect"), "the core connects the class"


def test_seed_keys_and_defaults() -> None:
    s = settings()
    assert (s.app_id, s.key, s.secret.reveal()) == ("1234567", "app-key", SECRET)
    assert (s.host, s.port, s.ssl, s.timeout) == ("api.pusherapp.com", 443, True, 5.0)
    assert (s.max_payload_bytes, s.max_connections) == (10240, 10)


def test_modern_key_cluster_and_plain_http() -> None:
    s = parse_settings({"app_id": 42, "key": "k", "secret": "x", "cluster": "eu", "ssl": False})
    assert (s.app_id, s.key, s.host, s.port, s.base_url) == (
        "42",
        "k",
        "api-eu.pusher.com",
        80,
        "http://api-eu.pusher.com:80",
    )


def test_host_port_timeout_and_payload() -> None:
    s = settings(host="127.0.0.1", port=6001, timeout=0.5, max_payload_bytes=20000)
    assert (s.base_url, s.timeout, s.max_payload_bytes) == ("https://127.0.0.1:6001", 0.5, 20000)
    assert BroadcastPusherDriver(s).limits.max_payload_bytes == 20000


def test_delivery_options_are_the_cores() -> None:
    # the core reads them from the same DRIVERS entry; the driver never sees them
    options = {**BASE, "retries": 5, "retry_backoff": 0.5, "at_least_once": True, "batch": False}
    with Broadcast({"DRIVER": "pusher", "DRIVERS": {"pusher": options}}) as broadcast:
        delivery = broadcast.driver(BroadcastPusherDriver).delivery
    assert (delivery.retry.retries, delivery.retry.backoff) == (5, 0.5)
    assert (delivery.at_least_once, delivery.batch, delivery.batch_in_flight) == (True, False, 4)
    with Broadcast({"DRIVER": "pusher", "DRIVERS": {"pusher": BASE}}) as broadcast:
        defaults = broadcast.driver(BroadcastPusherDriver).delivery
    assert (defaults.retry.retries, defaults.at_least_once, defaults.batch) == (2, False, True)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("retries", -1),
        ("retry_backoff", "fast"),
        ("at_least_once", "yes"),
        ("batch", 1),
        ("batch_in_flight", 0),
    ],
)
def test_bad_delivery_options_name_the_key(key: str, value: object) -> None:
    broadcast = Broadcast({"DRIVER": "pusher", "DRIVERS": {"pusher": {**BASE, key: value}}})
    with pytest.raises(ConfigurationError) as info:
        broadcast.driver()
    assert (info.value.driver, info.value.key) == ("pusher", key)
    assert SECRET not in str(info.value)


def test_batch_events_says_what_replaced_it() -> None:
    error = config_error(batch_events=False)
    assert error.key == "batch_events"
    assert "'batch'" in str(error)


@pytest.mark.parametrize("app_id", ["my-app", "12a", "", None, 1.5, True, "-3"])
def test_app_id_must_be_numeric(app_id: object) -> None:
    error = config_error(app_id=app_id if app_id is not None else ...)
    assert error.key == "app_id"
    assert "numeric" in str(error) or "required" in str(error)


def test_non_numeric_app_id_says_why() -> None:
    assert "must be numeric" in str(config_error(app_id="app-id"))


@pytest.mark.parametrize(
    ("changes", "key"),
    [
        ({"client": ...}, "key"),
        ({"secret": ...}, "secret"),
        ({"secret": ""}, "secret"),
        ({"secret": 123}, "secret"),
        ({"key": "other"}, "client"),
        ({"ssl": "yes"}, "ssl"),
        ({"port": "6001"}, "port"),
        ({"port": 70000}, "port"),
        ({"host": "https://example.com"}, "host"),
        ({"host": "example.com:443"}, "host"),
        ({"cluster": "EU west"}, "cluster"),
        ({"timeout": 0}, "timeout"),
        ({"timeout": "5"}, "timeout"),
        ({"max_payload_bytes": 0}, "max_payload_bytes"),
        ({"max_connections": 0}, "max_connections"),
        ({"encryption_master_key_base64": "not base64!"}, "encryption_master_key_base64"),
        ({"encryption_master_key_base64": base64.b64encode(b"short").decode()}, None),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_bad_values_name_the_key(changes: dict[str, Any], key: str | None) -> None:
    error = config_error(**changes)
    assert error.driver == "pusher"
    assert error.key == (key or "encryption_master_key_base64")


def test_master_key_value_never_shown() -> None:
    bad = base64.b64encode(b"a-31-byte-master-key-xxxxxxxxxx").decode()
    error = config_error(encryption_master_key_base64=bad)
    assert bad not in str(error)
    good = settings(encryption_master_key_base64=MASTER)
    assert MASTER not in repr(good)
    assert good.encryption_master_key is not None


def test_secret_objects_are_accepted() -> None:
    assert settings(secret=Secret(SECRET)).secret.reveal() == SECRET


def test_secret_not_in_repr_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    broadcast = Broadcast({"DRIVER": "pusher", "DRIVERS": {"pusher": BASE}})
    broadcaster = broadcast.driver()
    driver = broadcaster.driver
    texts = [repr(broadcaster), repr(driver), str(driver), repr(driver.settings), repr(broadcast)]
    assert all(SECRET not in text for text in [*texts, caplog.text])
    assert "1234567" in repr(driver)
    broadcast.close()


def test_connecting_makes_no_request() -> None:
    # port 9 (discard) on loopback: nothing may be contacted until a publish
    broadcast = Broadcast(
        {"DRIVER": "pusher", "DRIVERS": {"pusher": {**BASE, "host": "127.0.0.1", "port": 9}}}
    )
    driver = broadcast.driver(BroadcastPusherDriver).driver
    assert isinstance(driver, BroadcastPusherDriver)
    assert driver._pool.opened == 0
    broadcast.close()


def test_ssl_toggle_returns_a_cached_variant() -> None:
    broadcast = Broadcast({"DRIVER": "pusher", "DRIVERS": {"pusher": BASE}})
    tls = broadcast.driver("pusher")
    plain = tls.ssl(False)
    assert isinstance(plain.driver, BroadcastPusherDriver)
    assert plain.driver is not tls.driver
    assert plain.driver.settings.ssl is False and plain.driver.settings.port == 80
    assert tls.driver.settings.ssl is True
    assert tls.ssl(False) is plain
    assert plain.ssl(True).driver.settings.ssl is True
    broadcast.close()


def test_bad_config_fails_on_connect_naming_key() -> None:
    broadcast = Broadcast({"DRIVER": "pusher", "DRIVERS": {"pusher": {**BASE, "app_id": "x1"}}})
    with pytest.raises(ConfigurationError, match="app_id"):
        broadcast.driver()
