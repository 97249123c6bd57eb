"""Production concerns of the pusher transports, against real soketi.

* A wrong ``ssl`` setting looks like a network failure, and is one as far
  as delivery goes: ``ssl=True`` against a plain HTTP port fails in the TLS
  handshake (certainly not delivered, so retried; soketi never answers the
  hello, so the handshake runs into the timeout, and a server that answers it
  in plain text fails it at once), ``ssl=False`` against a TLS port gets
  its connection closed after the request was written (soketi's TLS port
  says nothing: maybe delivered, not re-sent). While the server has never
  answered, the error ends with the setting to try. Nothing else is sent to
  find out: connections are counted where they are made (the
  ``socket.connect`` audit event).
* aiohttp is an optional extra: without it ``achannel`` runs the sync pool
  in threads, checked in a fresh interpreter where ``import aiohttp`` fails as
  if it were not installed.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import json
import socket
import subprocess
import sys
import textwrap
import threading
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


def assert_ssl_hint(error: PublishError, says: str) -> None:
    assert error.status is None
    assert error.args[0].endswith(says), str(error)


@pytest.fixture
def tls_soketi(tmp_path: Path) -> Iterator[SoketiServer]:
    """A soketi of the test's own serving HTTPS (a test CA)."""
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
    options = own_soketi.driver_options(ssl=True, timeout=0.3, retry_backoff=0.01)
    connects = ConnectAttempts(own_soketi.port)
    try:
        async with Broadcast(seed_config(options)) as broadcast:
            error = await publish(broadcast, mode, ["a", "b"])
    finally:
        connects.stop()
    assert (error.failed, error.unknown, error.maybe_delivered) == (("a", "b"), (), False)
    assert (error.retryable, error.requests) == (True, 3), "a timeout: tried again, in vain"
    assert "(not sent)" in str(error)
    assert_ssl_hint(error, "if that port serves plain HTTP, set ssl=False")
    assert connects.count == 3, "one connection per attempt, nothing else"


class AnswersAtOnce:
    """A plain TCP server that answers every connection with an HTTP 400 at once, as some
    servers do to bytes they cannot read (a TLS hello), then closes it."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = self.server.accept()
                with conn:
                    conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

    def close(self) -> None:
        self.server.close()
        self.thread.join(5)


@pytest.mark.parametrize("mode", MODES)
async def test_ssl_true_against_a_server_that_answers_plain_http_says_so(
    soketi: SoketiServer, mode: str
) -> None:
    # the handshake reads an HTTP answer where a TLS record should be: a TLS error, not a
    # certificate's, so a node not reached (certainly not delivered; retried, in vain here)
    plain = AnswersAtOnce()
    try:
        options = soketi.driver_options(port=plain.port, ssl=True, retries=2, retry_backoff=0.01)
        async with Broadcast(seed_config(options)) as broadcast:
            error = await publish(broadcast, mode, ["a"])
    finally:
        plain.close()
    assert (error.failed, error.unknown, error.retryable, error.requests) == (
        ("a",),
        (),
        True,
        3,
    )
    assert "SSL" in str(error) and "(not sent)" in str(error)
    assert_ssl_hint(error, "if that port serves plain HTTP, set ssl=False")


@pytest.mark.parametrize("mode", MODES)
async def test_ssl_false_against_a_tls_port_says_so(tls_soketi: SoketiServer, mode: str) -> None:
    # soketi's TLS port closes a plain HTTP connection without a word, after the request
    # was written: as far as the driver can tell, the server may have it
    options = tls_soketi.driver_options(ssl=False, retry_backoff=0.01)
    connects = ConnectAttempts(tls_soketi.port)
    try:
        async with Broadcast(seed_config(options)) as broadcast:
            error = await publish(broadcast, mode, ["a"])
    finally:
        connects.stop()
    assert (error.failed, error.unknown, error.maybe_delivered) == ((), ("a",), True)
    assert error.requests == 1, "maybe delivered: not sent again with the defaults"
    assert "may have been delivered" in str(error)
    assert_ssl_hint(error, "if that port expects TLS, set ssl=True")
    assert connects.count == 1, "nothing else was sent to find out"


@pytest.mark.parametrize("mode", MODES)
async def test_no_ssl_hint_once_the_server_answered(
    soketi: SoketiServer, proxy: CountingProxy, mode: str
) -> None:
    # an answer lost on a new connection (soketi delivered it) after the server answered
    # plain HTTP before: a real lost answer, said so without a word about ssl
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
    assert "may have been delivered" in str(error) and "ssl" not in str(error)
    assert proxy.connections == 2 and len(proxy.requests) == 2


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
        transport = type(broadcast.driver().driver._sessions.get()).__name__
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
