"""How long the connect step can take over TLS (README, "How long a request can take"): a
node that is slow to take the connection and then never answers the TLS handshake costs one
``timeout`` for both on the async path (aiohttp's connect timeout covers the handshake), and
one for each on the sync path (the TCP connect's, then the handshake's: the socket's timeout
bounds the whole handshake, not each read). Either way nothing was sent: failed, not unknown.

A real listener on loopback (no mock): its accept queue is full, so the kernel drops the
client's first SYN; a thread frees the queue 0.3 s later, so the connect completes on the
client's first retransmission (Linux: 1 s after the first SYN). Nothing then reads, so the
TLS handshake waits for a ServerHello that never comes. The driver's timeout is 2 s: async,
about 2 s; sync, about 3 s (1 s to connect, then 2 s); 0.5 s either way is left for a
loaded machine, and the handshake alone is never left unbounded."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from broadcasting import Broadcast, PublishError

TIMEOUT = 2.0


class SlowToConnect:
    """The listener's port, and ``go()``: the queue is freed 0.3 s after it is called."""

    def __init__(self, port: int, going: threading.Event) -> None:
        self.port = port
        self.go = going.set


@pytest.fixture
def slow_to_connect() -> Iterator[SlowToConnect]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    filler = socket.create_connection(("127.0.0.1", port), timeout=2)  # the queue is full
    taken: list[socket.socket] = []
    going = threading.Event()

    def free_the_queue() -> None:
        # timed from the publish, not from here: on a loaded machine making the Broadcast
        # took longer than 0.3 s, and the queue was free before the first SYN (2026-12-07)
        going.wait(30)
        time.sleep(0.3)
        taken.append(server.accept()[0])  # kept open, never read

    thread = threading.Thread(target=free_the_queue, daemon=True)
    thread.start()
    yield SlowToConnect(port, going)
    going.set()
    thread.join()
    for conn in (*taken, filler, server):
        conn.close()


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_a_slow_connect_then_a_silent_handshake_is_bounded_as_documented(
    slow_to_connect: SlowToConnect, kind: str
) -> None:
    options = {
        "app_id": "1",
        "key": "k",
        "secret": "s",
        "host": "127.0.0.1",
        "port": slow_to_connect.port,
        "ssl": True,
        "timeout": TIMEOUT,
        "retries": 0,
    }
    async with Broadcast({"DRIVER": "pusher", "DRIVERS": {"pusher": options}}) as broadcast:
        # built before the queue's clock starts: built by the publish, it took more than
        # 0.3 s on a loaded machine, the queue was free before the first SYN, and the sync
        # connect step took 2.3 s (CI preview, 2026-12-07)
        broadcast.driver("pusher")
        slow_to_connect.go()
        started = time.monotonic()
        if kind == "sync":
            with pytest.raises(PublishError) as caught:
                broadcast.channel("orders", "x", "e")
        else:
            with pytest.raises(PublishError) as caught:
                await broadcast.achannel("orders", "x", "e")
        took = time.monotonic() - started
    assert caught.value.failed == ("orders",), "nothing was sent: the handshake never ended"
    bound = TIMEOUT + (1.0 if kind == "sync" else 0.0)  # sync: the 1 s connect, then TIMEOUT
    assert bound - 0.5 < took < bound + 0.5, f"the connect step took {took:.1f} s"
