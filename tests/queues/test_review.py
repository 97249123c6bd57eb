"""Queued publishes that went wrong before the fixes in broadcasting.contrib (found in review).

Each test runs the real parts: a real broker (Redis, RabbitMQ), a real worker process of
``worker_app`` where the behaviour is the worker's, a real soketi and a real WebSocket
subscriber.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time
from collections.abc import AsyncIterator, Iterator

import pytest
import queue_soak
from pusher_ws import PusherSubscriber
from queue_services import need
from soketi_pytest import start_soketi
from soketi_server import APP_KEY, APP_SECRET, SoketiServer, _app

from broadcasting.contrib._queue import DONE, UNKNOWN, parse

pytestmark = pytest.mark.soketi


@pytest.fixture(scope="module")
def user_soketi() -> Iterator[SoketiServer]:
    """A soketi whose app has user authentication on: ``pusher:signin`` works."""
    server = start_soketi(
        **{"appManager.array.apps": [{**_app(), "enableUserAuthentication": True}]}
    )
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
async def user_client(user_soketi: SoketiServer) -> AsyncIterator[PusherSubscriber]:
    """A real WebSocket connection to ``user_soketi``."""
    client = await PusherSubscriber(user_soketi.ws_url()).connect()
    try:
        yield client
    finally:
        await client.close()


async def sign_in(client: PusherSubscriber, user_id: str) -> None:
    """Sign ``client`` in as ``user_id`` (``pusher:signin``, as pusher-js does after the
    app's user-authentication endpoint answered): it then receives ``send_to_user`` events."""
    data = json.dumps({"id": user_id})
    text = f"{client.socket_id}::user::{data}"
    auth = f"{APP_KEY}:" + hmac.new(APP_SECRET.encode(), text.encode(), "sha256").hexdigest()
    frame = {"event": "pusher:signin", "data": {"auth": auth, "user_data": data}}
    await client._ws.send(json.dumps(frame))
    await client.flush()  # soketi answered the sign-in before this ping's pong


@pytest.mark.parametrize("kind", ["rq", "celery-amqp", "dramatiq"])
async def test_send_to_user_through_a_queue_reaches_the_user(
    user_soketi: SoketiServer, user_client: PusherSubscriber, uid: str, kind: str
) -> None:
    """``send_to_user(..., send=<queue>)`` (docs/background.md: it takes ``send=``) is
    published by the worker to the user's ``#server-to-user-<id>`` channel. Before the fix the
    worker validated the rebuilt message as a ``channel()`` publish, whose channel names may
    not start with ``#``: every such task failed for good in the worker."""
    need("Redis", 6379)
    if queue_soak.KINDS[kind][1].startswith("amqp"):
        need("RabbitMQ", 5672)
    user = f"user-{uid}"
    await sign_in(user_client, user)
    setup = queue_soak.Setup(kind, user_soketi.driver_options())
    broadcast, plugin = setup.producer()
    journal = setup.journal()
    try:
        with queue_soak.running(setup) as (worker,):
            receipt = await broadcast.asend_to_user(user, "dm", {"hi": uid}, send=plugin.name)
            setup.ids.append(receipt.message_id)
            assert receipt.pending and receipt.channels == (f"#server-to-user-{user}",)
            try:
                event = await user_client.next_event(timeout=30)
            except asyncio.TimeoutError:
                pytest.fail(f"nothing arrived; the worker said:\n{worker.log()[-3000:]}")
            assert (event.channel, event.event, event.json()) == (
                f"#server-to-user-{user}",
                "dm",
                {"hi": uid},
            )
            deadline = time.monotonic() + 10
            while (found := journal.read(receipt.message_id)) is None or parse(found)[0] != DONE:
                assert time.monotonic() < deadline, (found, worker.log()[-3000:])
                await asyncio.sleep(0.05)
    finally:
        await broadcast.aclose()
        journal.client.close()


async def test_an_rq_horse_killed_without_retries_left_is_rerun_and_reported_unknown(
    soketi: SoketiServer,
) -> None:
    """docs/background.md: an RQ work horse that dies "is noticed at once and the job re-run
    (then reported unknown)". RQ re-runs a job whose horse died only while the job has
    retries left, and a death uses one up: with ``retries=0`` (or on the last retry) the job
    went to the failed registry, never reported by broadcasting, its journal left "sending".
    Here the horse is killed by SIGKILL just before its publish request (worker_app's
    ``crash``), with ``retries=0``."""
    need("Redis", 6379)
    options = soketi.driver_options(retries=0)
    retry = {"retries": 0}
    setup = queue_soak.Setup("rq", options, retry=retry)
    broadcast, plugin = setup.producer()
    journal = setup.journal()
    try:
        with queue_soak.running(setup) as (worker,):
            receipt = await broadcast.achannel(
                f"orders-{setup.uid}", {"crash": "before"}, "shipped", send=plugin.name
            )
            setup.ids.append(receipt.message_id)
            deadline = time.monotonic() + 30
            while (found := journal.read(receipt.message_id)) is None or parse(found)[0] != UNKNOWN:
                assert time.monotonic() < deadline, (found, worker.log()[-3000:])
                await asyncio.sleep(0.1)
            reported = f"message {receipt.message_id}, unknown on 1 channel(s)"
            while reported not in (log := worker.log()):
                assert time.monotonic() < deadline, log[-3000:]
                await asyncio.sleep(0.1)
    finally:
        await broadcast.aclose()
        journal.client.close()
