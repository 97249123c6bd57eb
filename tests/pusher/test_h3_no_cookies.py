"""The driver sends back no cookie a load balancer sets, on the async path as on the sync one.

aiohttp's session keeps a cookie jar by default: behind a load balancer that sets an
affinity cookie (AWS ALB's ``AWSALB``, nginx's ``sticky cookie``, HAProxy's ``cookie``),
every later request of the driver's async session carried it and was pinned to the one node
that answered first, while the sync path (http.client, which keeps no cookies) spread over
the nodes. The async session now keeps no cookies either. Real parts: soketi, and nginx
configured by docs/scaling.md's snippet, with two lines added: every answer sets a cookie,
and a request that carries it is refused with 409.

aiohttp's default jar ignores cookies from a host given as an IP address, so the driver
reaches nginx by the name ``localhost``: by 127.0.0.1, the old jar would have kept nothing
and this test could not fail.
"""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import nginx_balancer
import pytest
from nginx_balancer import HOST, NginxBalancer
from soketi_pytest import running_nginx, unavailable
from soketi_server import SoketiServer

from broadcasting import Broadcast

pytestmark = pytest.mark.soketi

NAME = "localhost"
SET_COOKIE = 'add_header Set-Cookie "affinity=node-1; Path=/" always;\n'
REFUSE = '\n        if ($http_cookie ~ "affinity") { return 409; }'


def _sticky(text: str) -> str:
    """The documented snippet, setting the cookie (http level) and refusing it (location)."""
    if text.count("location / {") != 1:
        raise ValueError("docs/scaling.md's nginx snippet has no single 'location / {'")
    return SET_COOKIE + text.replace("location / {", "location / {" + REFUSE)


@pytest.fixture
def sticky(soketi: SoketiServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[NginxBalancer]:
    """nginx in front of soketi, setting an affinity cookie and refusing requests that carry it."""
    resolved = {info[4][0] for info in socket.getaddrinfo(NAME, None, type=socket.SOCK_STREAM)}
    if resolved != {HOST}:  # nginx listens on HOST only: the name must lead there alone
        unavailable("a host name for 127.0.0.1", f"{NAME!r} resolves to {sorted(resolved)}")
    documented = nginx_balancer.snippet
    monkeypatch.setattr(nginx_balancer, "snippet", lambda text=None: _sticky(documented(text)))
    yield from running_nginx([(HOST, soketi.port)])


def _options(soketi: SoketiServer, balancer: NginxBalancer) -> dict[str, Any]:
    options = balancer.driver_options(soketi.driver_options())
    return {"DRIVER": "pusher", "DRIVERS": {"pusher": {**options, "host": NAME}}}


def test_the_balancer_sets_the_cookie_and_refuses_it(sticky: NginxBalancer) -> None:
    """What makes the other tests able to fail: the cookie is set, and carrying it is refused."""
    url = f"http://{NAME}:{sticky.port}/ready"
    with urllib.request.urlopen(url, timeout=5) as answer:
        assert answer.status == 200
        assert answer.headers["Set-Cookie"] == "affinity=node-1; Path=/"
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(
            urllib.request.Request(url, headers={"Cookie": "affinity=node-1"}), timeout=5
        )
    assert refused.value.code == 409


def test_sync_publishes_carry_no_cookie(soketi: SoketiServer, sticky: NginxBalancer) -> None:
    with Broadcast(_options(soketi, sticky)) as broadcast:
        for n in (1, 2):  # the second one would carry the cookie the first answer set
            assert broadcast.channel("sticky-sync", {"n": n}, "shipped").requests == 1
        assert not broadcast.driver("pusher").driver.channel_info("sticky-sync").occupied


async def test_async_publishes_carry_no_cookie(soketi: SoketiServer, sticky: NginxBalancer) -> None:
    with Broadcast(_options(soketi, sticky)) as broadcast:
        for n in (1, 2):  # the second one would carry the cookie the first answer set
            receipt = await broadcast.achannel("sticky-async", {"n": n}, "shipped")
            assert receipt.requests == 1
        info = await broadcast.driver("pusher").driver.achannel_info("sticky-async")
        assert not info.occupied
        await broadcast.aclose()
