"""Production concerns of the pusher transports, against real soketi.

* A wrong ``ssl`` setting is a configuration mistake, not a network failure:
  ``ssl=True`` against a plain HTTP port (soketi never answers the TLS
  hello, so the handshake runs into the timeout) and ``ssl=False`` against a
  TLS port (soketi closes the connection without an answer) each end in one
  certain, not retried PublishError that names the setting. The server is
  probed once to tell (``_wire.py``), and only a server that never answered
  in the configured protocol: connections are counted where they are made
  (the ``socket.connect`` audit event), so every probe shows.
* aiohttp is an optional extra: without it ``achannel`` runs the sync pool
  in threads, checked in a fresh interpreter where ``import aiohttp`` fails as
  if it were not installed.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from http_proxy import ConnectAttempts, CountingProxy
from pusher_ws import PusherSubscriber, Received, Subscribe
from soketi_pytest import start_soketi
from soketi_server import SoketiServer

from broadcasting import Broadcast, PublishError

pytestmark = pytest.mark.soketi

MODES = ("sync", "async")


def seed_config(options: dict[str, Any]) -> dict[str, Any]:
    return {"DRIVER": "pusher", "DRIVERS": {"pusher": options}}


async def publish(broadcast: Broadcast, mode: str, channels: list[str]) -> PublishError:
    """Publish ``x`` in ``mode`` (sync in a thread); the PublishError it must raise."""
    if mode == "sync":
        attempt = asyncio.to_thread(broadcast.channel, channels, "x")
    else:
        attempt = broadcast.achannel(channels, "x")
    with pytest.raises(PublishError) as info:
        await attempt
    return info.value


def assert_certain_ssl_error(error: PublishError, channels: list[str], says: str) -> None:
    assert (error.failed, error.unknown, error.delivered) == (tuple(channels), (), ())
    assert (error.retryable, error.maybe_delivered, error.requests) == (False, False, 1)
    assert error.status is None
    assert says in str(error), str(error)


@pytest.fixture
def tls_soketi(tmp_path: Path) -> Iterator[SoketiServer]:
    """A soketi of the test's own serving HTTPS (a test CA); its port is new to the probes."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.cert_chain_pems[0].write_to_path(str(cert_path))
    cert.private_key_pem.write_to_path(str(key_path))
    server = start_soketi(**{"ssl.certPath": str(cert_path), "ssl.keyPath": str(key_path)})
    yield server
    server.close()


# -- a wrong ssl setting -------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_ssl_true_against_a_plain_port_says_so(own_soketi: SoketiServer, mode: str) -> None:
    # soketi reads the TLS hello as the start of an HTTP request and waits for
    # the rest: the handshake gets no answer before the (short) timeout
    options = own_soketi.driver_options(ssl=True, timeout=0.5, retry_backoff=0.01)
    connects = ConnectAttempts(own_soketi.port)
    try:
        async with Broadcast(seed_config(options)) as broadcast:
            error = await publish(broadcast, mode, ["a", "b"])
            assert_certain_ssl_error(error, ["a", "b"], "does not speak TLS")
            assert "set ssl=False" in str(error)
            assert connects.count == 2, "the request, then one plain HTTP probe"

            again = await publish(broadcast, mode, ["a"])
            assert_certain_ssl_error(again, ["a"], "does not speak TLS")
            assert connects.count == 3, "what the probe found is remembered: no second probe"
    finally:
        connects.stop()


@pytest.mark.parametrize("mode", MODES)
async def test_ssl_false_against_a_tls_port_says_so(tls_soketi: SoketiServer, mode: str) -> None:
    # soketi's TLS port closes a plain HTTP connection without a word
    options = tls_soketi.driver_options(ssl=False, retry_backoff=0.01)
    connects = ConnectAttempts(tls_soketi.port)
    try:
        async with Broadcast(seed_config(options)) as broadcast:
            error = await publish(broadcast, mode, ["a"])
            assert_certain_ssl_error(error, ["a"], "expects TLS")
            assert "set ssl=True" in str(error)
            assert connects.count == 3, "the request, a plain HTTP probe, then a TLS hello"

            again = await publish(broadcast, mode, ["a"])
            assert_certain_ssl_error(again, ["a"], "expects TLS")
            assert connects.count == 4, "no second probe"
    finally:
        connects.stop()


@pytest.mark.parametrize("mode", MODES)
async def test_a_server_that_answered_is_never_probed(
    soketi: SoketiServer, proxy: CountingProxy, mode: str
) -> None:
    # an answer lost on a new connection (soketi delivered it) after the server answered
    # plain HTTP before: a real lost answer, said so at once, without probing anything
    options = soketi.driver_options(port=proxy.port)
    async with Broadcast(seed_config(options)) as broadcast:
        if mode == "sync":
            await asyncio.to_thread(broadcast.channel, "p", "answered")
        else:
            await broadcast.achannel("p", "answered")
        await broadcast.aclose()  # the next request opens a new connection
        proxy.drop()
        error = await publish(broadcast, mode, ["p"])
    assert (error.unknown, error.maybe_delivered) == (("p",), True)
    assert "may have been delivered" in str(error) and "set ssl" not in str(error)
    assert proxy.connections == 2 and len(proxy.requests) == 2, "no probe reached the server"


async def test_a_tls_port_answering_http_400_gets_a_hint(
    soketi: SoketiServer, proxy: CountingProxy
) -> None:
    # what nginx and most load balancers answer on a TLS port to plain HTTP
    html = "<html><center>The plain HTTP request was sent to HTTPS port</center></html>"
    proxy.fail(400, html)
    async with Broadcast(seed_config(soketi.driver_options(port=proxy.port))) as broadcast:
        error = await publish(broadcast, "sync", ["h"])
    assert (error.status, error.failed, error.retryable) == (400, ("h",), False)
    assert "does the server expect TLS? then set ssl=True" in str(error)


# -- aiohttp is optional -------------------------------------------------------------------

WITHOUT_AIOHTTP = """
import asyncio, importlib.abc, json, sys

class NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "aiohttp" or name.startswith("aiohttp."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, NotInstalled())

from broadcasting import Broadcast

config = json.loads(sys.argv[1])


async def main():
    async with Broadcast(config) as broadcast:
        one = await broadcast.achannel("no-aiohttp", "alone")
        await asyncio.gather(*(broadcast.achannel("no-aiohttp", str(n)) for n in range(12)))
        transport = type(broadcast.driver()._sessions.get()).__name__
        await broadcast.aclose()
    return {
        "requests": one.requests,
        "transport": transport,
        "aiohttp": [name for name in sys.modules if name.split(".")[0] == "aiohttp"],
    }


print(json.dumps(asyncio.run(main())))
"""


async def test_achannel_works_without_aiohttp(
    soketi: SoketiServer, subscribe: Subscribe, received: Received
) -> None:
    sub: PusherSubscriber = await subscribe("no-aiohttp")
    config = json.dumps(seed_config(soketi.driver_options()))
    run = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", textwrap.dedent(WITHOUT_AIOHTTP), config],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["aiohttp"] == [], "aiohttp was never imported"
    assert report["transport"] == "ConnectionPool", "the sync pool, run in threads"
    assert report["requests"] == 1
    datas = sorted(event.data for event in await received(sub, "no-aiohttp"))
    assert datas == sorted(["alone", *(str(n) for n in range(12))]), "each exactly once"


def test_aiohttp_is_an_extra() -> None:
    requires = importlib.metadata.requires("broadcasting-pusher") or []
    plain = [r for r in requires if "extra ==" not in r]
    assert not any(r.startswith("aiohttp") for r in plain), (
        f"aiohttp must only come with the [aiohttp] extra, not for every install: {requires} "
        "(a stale editable install? reinstall plugins/pusher_driver)"
    )
    assert any(r.startswith("aiohttp") and "extra == 'aiohttp'" in r for r in requires)
