"""Host names that only fail when a request is sent are refused with the settings.

A bracketed ``host`` that is no IPv6 address (``[1:2]``), a numeric host that is not four
decimal numbers (``127.1``, ``1.2.3.4.5``, ``256.1.1.1``, ``2130706433``) and a ``cluster`` too
long for a DNS label were taken as settings; a publish then failed while being sent: the
async path's aiohttp refused the URL (a ValueError before the request, or an "invalid URL"
read as a lost answer), the resolver raised UnicodeError for the cluster's host. Either way
a publish that certainly went nowhere ended *unknown* ("may have been delivered"), and the
sync path (whose resolver takes ``127.1``) and the async path disagreed. Each is now a
ConfigurationError naming the key, raised before any connection: the tests count connection
attempts with the process's own audit hook (tests/servers/http_proxy.py), no mock.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from http_proxy import ConnectAttempts

from broadcasting import Broadcast, ConfigurationError
from broadcasting_pusher._settings import parse_settings

BASE: dict[str, Any] = {"app_id": "1", "key": "app-key", "secret": "s3cret-value", "ssl": False}

#: Hosts aiohttp refuses as URLs, or whose name the resolver refuses.
BAD_HOSTS = [
    "[1:2]",  # brackets, but no IPv6 address
    "[1.2.3.4]",
    "127.1",  # a legacy numeric form: the sync resolver takes it, aiohttp does not
    "1.2.3.4.5",
    "256.1.1.1",
    "2130706433",
    "01.2.3.4",
]
GOOD_HOSTS = ["127.0.0.1", "10.0.0.2", "[::1]", "[::ffff:1.2.3.4]", "soketi-1", "a1.example"]


@pytest.mark.parametrize("host", BAD_HOSTS)
def test_a_host_no_transport_can_reach_is_a_configuration_error(host: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        parse_settings({**BASE, "host": host})
    assert info.value.key == "host"


@pytest.mark.parametrize("host", BAD_HOSTS)
def test_a_hosts_entry_no_transport_can_reach_is_a_configuration_error(host: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        parse_settings({**BASE, "hosts": ["127.0.0.1:6001", f"{host}:6001"]})
    assert info.value.key == "hosts"
    assert "entry 1" in str(info.value)


@pytest.mark.parametrize("host", GOOD_HOSTS)
def test_hosts_both_transports_reach_are_accepted(host: str) -> None:
    assert parse_settings({**BASE, "host": host}).host == host
    assert parse_settings({**BASE, "hosts": [f"{host}:6001"]}).nodes[0].port == 6001


def test_a_cluster_too_long_for_a_host_name_is_a_configuration_error() -> None:
    longest = "c" * 59  # api-<59>.pusher.com: a first label of 63 characters
    assert parse_settings({**BASE, "cluster": longest}).host == f"api-{longest}.pusher.com"
    with pytest.raises(ConfigurationError) as info:
        parse_settings({**BASE, "cluster": "c" * 60})
    assert info.value.key == "cluster"
    assert "s3cret" not in str(info.value)


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("options", [{"host": "127.1"}, {"host": "[1:2]"}, {"cluster": "c" * 70}])
def test_a_publish_is_refused_before_any_connection(
    options: dict[str, Any], mode: str, refusing: ConnectAttempts
) -> None:
    """Before: sync and async publishes to these ended unknown (send() raised ValueError or
    UnicodeError) or, for 127.1 on the sync path only, went out."""
    config = {"DRIVER": "pusher", "DRIVERS": {"pusher": {**BASE, "port": refusing.port, **options}}}
    with Broadcast(config) as broadcast:
        publish = (
            (lambda: broadcast.channel("orders", "data", "shipped"))
            if mode == "sync"
            else (lambda: asyncio.run(broadcast.achannel("orders", "data", "shipped")))
        )
        with pytest.raises(ConfigurationError):
            publish()
    assert refusing.count == 0
