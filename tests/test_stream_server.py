"""The tests' own asyncio servers (tests/servers/stream_server.py, and the Ably emulator's
aiohttp server) leave no connection for the garbage collector: one left was finalized in a
later, unrelated test, and on Python 3.13.0 its ``__del__`` raised there (CPython gh-109564),
failing CI in tests/outbox/test_check.py and tests/outbox/test_review_s36c_owner.py."""

from __future__ import annotations

import asyncio
import gc
import socket
import ssl
import sys
import threading
import time
import warnings
from typing import Any

import pytest
from ably_emulator import AblyEmulator
from stream_server import HOST, StreamServer


async def _hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read()  # until the client closes, or the server stops


def _unclosed_after(stop: Any) -> list[str]:
    """What the garbage collector finds unclosed once ``stop()`` returned: ResourceWarnings and
    exceptions raised in a ``__del__`` (3.13.0's TypeError)."""
    gc.collect()  # what earlier tests in this process left is theirs, not this server's
    unraisable: list[str] = []
    previous = sys.unraisablehook
    sys.unraisablehook = lambda hook: unraisable.append(repr(hook.exc_value))
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ResourceWarning)
            stop()
            gc.collect()
    finally:
        sys.unraisablehook = previous
    return [str(w.message) for w in caught if "transport" in str(w.message)] + unraisable


def test_connections_open_at_stop_are_closed_on_the_servers_loop() -> None:
    server = StreamServer(_hold).start()
    clients = [socket.create_connection((HOST, server.port)) for _ in range(20)]
    for client in clients[:10]:
        client.sendall(b"some bytes")
    try:
        assert _unclosed_after(server.stop) == []
    finally:
        for client in clients:
            client.close()


def test_connections_arriving_while_it_stops_are_closed_too() -> None:
    """Clients keep connecting while the server stops: some are accepted by the kernel and by
    the loop after the handlers were cancelled."""
    server = StreamServer(_hold).start()
    clients: list[socket.socket] = []
    stopping = threading.Event()

    def connect() -> None:
        while not stopping.is_set():
            try:
                clients.append(socket.create_connection((HOST, server.port), timeout=1))
            except OSError:
                return

    hammer = threading.Thread(target=connect)
    hammer.start()
    deadline = time.monotonic() + 10
    while len(clients) < 50 and time.monotonic() < deadline:
        time.sleep(0.001)

    def stop() -> None:
        server.stop()
        stopping.set()
        hammer.join(10)

    try:
        assert _unclosed_after(stop) == []
    finally:
        for client in clients:
            client.close()
    assert not server.loop.is_running() and server.loop.is_closed()


def test_a_handler_ending_closes_its_connection() -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"bye")

    with StreamServer(answer) as server, socket.create_connection((HOST, server.port)) as client:
        client.settimeout(5)
        received = b""
        while chunk := client.recv(100):
            received += chunk
    assert received == b"bye"  # then the end of the stream: the server closed it


def test_a_port_that_cannot_be_served_is_an_error_in_the_callers_thread() -> None:
    bad = StreamServer(_hold, name="bad", host="192.0.2.1")  # TEST-NET-1: not this machine's
    with pytest.raises(RuntimeError, match="bad could not start") as caught:
        bad.start()
    assert isinstance(caught.value.__cause__, OSError)


def test_the_check_sees_connections_left_open() -> None:
    """The shape some of the tests' servers had: the loop closed with handlers still waiting.
    The check above finds each connection (and 3.13.0's TypeError), so it can fail."""
    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(asyncio.start_server(_hold, HOST, 0))
    port = server.sockets[0].getsockname()[1]
    thread = threading.Thread(target=loop.run_forever)
    thread.start()
    clients = [socket.create_connection((HOST, port)) for _ in range(3)]
    for client in clients:  # each accepted and handed to a handler
        client.sendall(b"x")
        asyncio.run_coroutine_threadsafe(asyncio.sleep(0.05), loop).result(5)

    def stop() -> None:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        server.close()
        loop.close()

    try:
        left = _unclosed_after(stop)
    finally:
        for client in clients:
            client.close()
    assert sum("unclosed transport" in text for text in left) == 3


@pytest.mark.server
def test_the_ably_emulator_closes_the_connections_open_at_stop() -> None:
    """Stopped while its clients keep their connections alive (an SDK's pool): the runner's
    cleanup only began each TLS shutdown, waiting for the client's close_notify, and the loop
    was closed at once, leaving every socket to the garbage collector (on 3.13.0: the
    TypeError, in a later test: CI's failure in tests/outbox/test_review_s36c_owner.py)."""
    emulator = AblyEmulator().start()
    context = ssl.create_default_context(cafile=emulator.ca_path)
    clients: list[socket.socket] = []
    try:
        for _ in range(3):
            raw = socket.create_connection((HOST, emulator.port), timeout=5)
            client = context.wrap_socket(raw, server_hostname=HOST)
            clients.append(client)
            client.sendall(b"GET /time HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert client.recv(4096).startswith(b"HTTP/1.1 200 ")  # answered, kept alive
        if sys.version_info >= (3, 13):  # Server.abort_clients(): one still in its handshake
            clients.append(socket.create_connection((HOST, emulator.port), timeout=5))
            time.sleep(0.1)  # accepted by the emulator's loop
        assert _unclosed_after(emulator.stop) == []
    finally:
        emulator.stop()
        for client in clients:
            client.close()
