"""with_options() variants for several tenants each reach their own app, on one real soketi.

soketi serves two apps here (different ids, keys and secrets). A driver for
app B makes variants for B and C with ``with_options``, the secrets wrapped in
``Secret`` (which all look alike in a repr): each variant must publish to its
own app, as a subscriber of each app sees, and asking again for the same
options must give back the same driver.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from pusher_ws import PusherSubscriber
from soketi_pytest import start_soketi
from soketi_server import CONFIG_FILE, SoketiServer

from broadcasting import Broadcast
from broadcasting.plugin import Secret

TENANTS = {
    "b": {"id": "5001", "key": "tenant-b-key", "secret": "tenant-b-secret-9af3"},
    "c": {"id": "5002", "key": "tenant-c-key", "secret": "tenant-c-secret-7d21"},
}


@pytest.fixture(scope="module")
def two_apps() -> Iterator[SoketiServer]:
    base = json.loads(CONFIG_FILE.read_text(encoding="utf-8"))["appManager.array.apps"][0]
    apps = [{**base, **tenant} for tenant in TENANTS.values()]
    server = start_soketi(**{"appManager.array.apps": apps})
    try:
        yield server
    finally:
        server.close()


def options_for(server: SoketiServer, tenant: str) -> dict[str, Any]:
    app = TENANTS[tenant]
    return server.driver_options(
        app_id=app["id"], client=app["key"], secret=Secret(app["secret"]), retries=0
    )


async def test_each_variant_publishes_to_its_own_app(two_apps: SoketiServer) -> None:
    config = {"DRIVER": "pusher", "DRIVERS": {"pusher": options_for(two_apps, "b")}}
    with Broadcast(config) as broadcast:
        base = broadcast.driver("pusher")
        variants = {t: base.with_options(**options_for(two_apps, t)) for t in TENANTS}
        assert variants["b"] is not variants["c"]
        assert base.with_options(**options_for(two_apps, "c")) is variants["c"]  # reused
        subscribers = {}
        for tenant, app in TENANTS.items():
            subscribers[tenant] = await PusherSubscriber(two_apps.ws_url(app["key"])).connect()
            await subscribers[tenant].subscribe("orders")
        try:
            for tenant, driver in variants.items():
                await driver.achannel("orders", f"for {tenant}", "shipped")
            for tenant, subscriber in subscribers.items():
                event = await subscriber.next_event(timeout=5)
                assert event.data == f"for {tenant}"  # its own app's event, not the other's
                with pytest.raises(asyncio.TimeoutError):
                    await subscriber.next_event(timeout=0.3)  # and nothing else
        finally:
            for subscriber in subscribers.values():
                await subscriber.close()
