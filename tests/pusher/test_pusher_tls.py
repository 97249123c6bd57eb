"""TLS, the default: a soketi serving HTTPS/WSS with a certificate from a test CA.

The driver verifies certificates against the default trust store; the test CA
is added through ``SSL_CERT_FILE`` (which OpenSSL reads), as a user with a
private CA would do.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import pytest
import trustme
from pusher_ws import PusherSubscriber
from soketi_server import SoketiServer

from broadcasting import Broadcast, PublishError

pytestmark = pytest.mark.soketi


def config(server: SoketiServer, **changes: Any) -> dict[str, Any]:
    options = server.driver_options(**changes)
    assert options.pop("ssl") is True
    return {"DRIVER": "pusher", "DRIVERS": {"pusher": options}}  # ssl: the default, True


async def test_publishes_over_tls(
    tls_soketi: SoketiServer, ca: trustme.CA, ca_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    async with PusherSubscriber(tls_soketi.ws_url(), ssl=client_context) as sub:
        await sub.subscribe("secure")
        with Broadcast(config(tls_soketi)) as broadcast:
            assert broadcast.driver().driver.settings.base_url.startswith("https://")
            broadcast.channel("secure", "over https, sync")
            await broadcast.achannel("secure", "over https, async")
            await broadcast.aclose()
        assert [e.data for e in await sub.events(2)] == ["over https, sync", "over https, async"]


async def test_untrusted_certificate_is_not_retried(tls_soketi: SoketiServer) -> None:
    # refused before anything was sent: certainly not delivered, and sending again cannot help
    with Broadcast(config(tls_soketi, retry_backoff=0.01)) as broadcast:
        with pytest.raises(PublishError) as info:
            broadcast.channel("secure", "x")
        assert (info.value.status, info.value.retryable, info.value.requests) == (None, False, 1)
        assert (info.value.failed, info.value.unknown) == (("secure",), ())
        assert "certificate" in str(info.value)
        with pytest.raises(PublishError) as info:
            await broadcast.achannel("secure", "x")
        assert (info.value.status, info.value.retryable, info.value.requests) == (None, False, 1)
        assert (info.value.failed, info.value.unknown) == (("secure",), ())
        assert "certificate" in str(info.value)
        await broadcast.aclose()
