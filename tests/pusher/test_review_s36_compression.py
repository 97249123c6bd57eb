"""The async transport reads answers as the sync one does behind a proxy that compresses JSON.

aiohttp adds ``Accept-Encoding: gzip, deflate`` to every request, and the driver's session
was made with ``auto_decompress=False``: behind nginx with ``gzip on; gzip_types
application/json;`` (or any CDN in front of a self-hosted soketi), an async query's answer
came back gzipped and was read as "not JSON", while the same query on the sync path (whose
http.client asks for no encoding) worked. A publish's refusal in a 2xx (soketi's ``{"error",
"code"}``) would likewise have been unreadable. The async requests now ask for no encoding,
as the sync ones. Real parts: soketi, and nginx configured by docs/scaling.md's snippet with
gzip switched on.
"""

from __future__ import annotations

from collections.abc import Iterator

import nginx_balancer
import pytest
from nginx_balancer import HOST, NginxBalancer
from pusher_ws import Subscribe
from soketi_pytest import running_nginx
from soketi_server import SoketiServer

from broadcasting import Broadcast

pytestmark = pytest.mark.soketi

GZIP = "gzip on;\ngzip_types application/json;\ngzip_min_length 1;\n"


@pytest.fixture
def gzipping(soketi: SoketiServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[NginxBalancer]:
    """nginx in front of soketi, compressing every JSON answer a client accepts gzip for."""
    documented = nginx_balancer.snippet
    monkeypatch.setattr(nginx_balancer, "snippet", lambda text=None: GZIP + documented(text))
    yield from running_nginx([(HOST, soketi.port)])


async def test_async_queries_read_the_answer_behind_a_compressing_proxy(
    soketi: SoketiServer, gzipping: NginxBalancer, subscribe: Subscribe
) -> None:
    await subscribe("gzipped-room")
    options = gzipping.driver_options(soketi.driver_options())
    with Broadcast({"DRIVER": "pusher", "DRIVERS": {"pusher": options}}) as broadcast:
        driver = broadcast.driver("pusher").driver
        sync_info = driver.channel_info("gzipped-room")
        assert sync_info.occupied
        assert await driver.achannel_info("gzipped-room") == sync_info
        names = [info.name for info in await driver.aoccupied_channels("gzipped-")]
        assert names == ["gzipped-room"]
        assert (await broadcast.driver("pusher").acheck()).status == "ok"
        receipt = await broadcast.achannel("gzipped-room", {"id": 1}, "shipped")
        assert receipt.requests == 1
        await broadcast.aclose()
