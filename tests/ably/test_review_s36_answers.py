"""Answers the SDK cannot read although they came whole: a body that is not what its
``Content-Encoding`` says (httpx's ``DecodingError``), JSON nested deeper than Python can
parse (``RecursionError``). Ably may have stored the publish, so it is *unknown* and, Ably
dropping a re-sent id, retried; a query gets its ``QueryError``, and a health check a result.

A TLS reverse proxy in front of the emulator (the emulator itself answers only well-formed
bodies) forwards every request, so the emulator stores what it stores, and replaces the next
answers: it is what a misbehaving proxy in front of Ably would send. The driver, the SDK,
httpx and TLS are the real ones.
"""

from __future__ import annotations

import http.client
import http.server
import ssl
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from broadcasting import Broadcast, PublishError, QueryError
from servers.ably_emulator import AblyEmulator
from servers.secret_scan import chain

DEEP = b"[" * 100_000 + b"]" * 100_000  # json.loads raises RecursionError on it


class LyingProxy:
    """Forwards to the emulator; the next ``lies`` answers are replaced by ``how``."""

    def __init__(self, emulator: AblyEmulator, directory: Path) -> None:
        self.lies = 0
        self.how = "gzip"  # "gzip": the answer claims gzip; "deep": a 201 of DEEP JSON
        self.upstream = (emulator.host, emulator.port, emulator.ca_path)
        ca = trustme.CA()
        self.bundle = directory / "bundle.pem"  # this proxy's CA and the emulator's
        self.bundle.write_bytes(ca.cert_pem.bytes() + Path(emulator.ca_path).read_bytes())
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1").configure_cert(context)
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                proxy.forward(self)

            do_POST = do_GET

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def forward(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length)
        host, port, ca_path = self.upstream
        upstream = http.client.HTTPSConnection(
            host, port, context=ssl.create_default_context(cafile=ca_path), timeout=10
        )
        drop = {"host", "connection", "content-length", "accept-encoding"}
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in drop}
        upstream.request(handler.command, handler.path, body=body, headers=headers)
        answer = upstream.getresponse()
        status, content_type, raw = answer.status, answer.getheader("Content-Type"), answer.read()
        upstream.close()
        lie, self.lies = self.lies > 0, max(0, self.lies - 1)
        if lie and self.how == "deep":
            status, content_type, raw = 201, "application/json", DEEP
        handler.send_response(status)
        handler.send_header("Content-Type", content_type or "application/json")
        if lie and self.how == "gzip":
            handler.send_header("Content-Encoding", "gzip")  # it is not gzip
        handler.send_header("Content-Length", str(len(raw)))
        handler.end_headers()
        handler.wfile.write(raw)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def proxy(
    emulator: AblyEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[LyingProxy]:
    server = LyingProxy(emulator, tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(server.bundle))
    yield server
    server.close()


@pytest.fixture
def through(
    proxy: LyingProxy, make_broadcast: Callable[..., Broadcast]
) -> Callable[..., Broadcast]:
    """A Broadcast whose `ably` driver talks to the emulator through the proxy."""
    return lambda **options: make_broadcast(tls_port=proxy.port, fallback_hosts=[], **options)


@pytest.mark.parametrize("how", ["gzip", "deep"])
def test_an_unreadable_answer_is_retried_and_the_message_stored_once(
    emulator: AblyEmulator, proxy: LyingProxy, through: Callable[..., Broadcast], how: str
) -> None:
    proxy.how, proxy.lies = how, 1
    receipt = through().channel("orders", {"id": 1}, "shipped")
    assert receipt.channels == ("orders",)
    assert len(emulator.messages("orders")) == 1
    assert len(emulator.publish_requests) == 2  # the same id twice: Ably kept one


@pytest.mark.parametrize("how", ["gzip", "deep"])
async def test_an_unreadable_answer_is_unknown_and_retryable(
    emulator: AblyEmulator, proxy: LyingProxy, through: Callable[..., Broadcast], how: str
) -> None:
    proxy.how, proxy.lies = how, 1
    broadcast = through(retries=0)
    with pytest.raises(PublishError) as caught:
        await broadcast.achannel("orders", "m")
    await broadcast.aclose()
    error = caught.value
    assert error.unknown == ("orders",) and error.failed == ()
    assert error.retryable and error.kind == "other"
    assert "could not be read" in str(error)
    assert "instead of a PublishError" not in str(error)  # no driver bug either
    assert len(emulator.messages("orders")) == 1


@pytest.mark.parametrize("how", ["gzip", "deep"])
def test_an_unreadable_query_answer_is_a_query_error_without_the_sdk_in_it(
    proxy: LyingProxy, through: Callable[..., Broadcast], how: str
) -> None:
    broadcast = through()
    proxy.how, proxy.lies = how, 1
    with pytest.raises(QueryError) as caught:
        broadcast.terminate_user("7")  # a client holding the key makes this request
    error = caught.value
    assert error.retryable and "could not be read" in str(error)
    assert error.__traceback__ is not None
    # raised from a frame that holds no SDK client: nothing chained from inside the SDK
    assert [type(e) for e in chain(error)] == [QueryError]
    proxy.lies = 1
    health = broadcast.driver().check()  # a result, not an exception out of check()
    assert health.status != "ok"
