"""The async views of ``orders.views`` through Django's ``AsyncClient`` under pytest-django,
with a real WebSocket subscriber on the test's soketi counting what arrives (run by
tests/web/test_django_async.py, once per database and middleware stack).

``transaction=True``: the views' transactions commit (or roll back) for real, in the threads
Django runs them in; a plain ``django_db`` test's own transaction lives in another thread.
"""

from __future__ import annotations

import asyncio
import os
import re
import threading
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.db import connections, transaction
from orders.models import Order
from orders.views import Broken, broadcast
from pusher_ws import PusherSubscriber

import broadcasting.contrib.django.transaction as django_transaction
from broadcasting import Receipt
from broadcasting.contrib.django.models import OutboxRow

pytestmark = pytest.mark.django_db(transaction=True)
DOCS = Path(__file__).resolve().parents[3] / "docs" / "background.md"


@pytest.fixture(autouse=True)
async def _close_the_threads_connections() -> AsyncIterator[None]:
    """Django's test client keeps connections open; the views' thread opened its own, which
    would keep PostgreSQL from dropping the test database at the end."""
    yield
    await sync_to_async(connections.close_all)()


@pytest.fixture
def channel() -> str:
    return f"orders-{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def subscriber(channel: str) -> AsyncIterator[PusherSubscriber]:
    sub = await PusherSubscriber(os.environ["ASYNC_WS_URL"]).connect()
    await sub.subscribe(channel)
    try:
        yield sub
    finally:
        await sub.close()


async def arrived(subscriber: PusherSubscriber, channel: str) -> list[Any]:
    """What reached the subscriber so far (read up to a marker published after it)."""
    events = await subscriber.until_marker(lambda marker: broadcast.achannel(channel, marker, "m"))
    return [(event.event, event.json()) for event in events]


#: the views whose transaction holds the publish: a sync function run with sync_to_async()
#: that publishes with channel(), or awaits async code that publishes with achannel(); and
#: an async view inside a sync middleware's atomic() (deselected without that middleware)
TRANSACTIONS = {
    "sync-function": "/orders/",
    "awaited-through-async-to-sync": "/orders/announced/",
    "in-a-middlewares-atomic": "/atomic/orders/",
}


@pytest.mark.parametrize("path", TRANSACTIONS.values(), ids=TRANSACTIONS.keys())
@pytest.mark.parametrize(("item", "status"), [("mug", 201), ("broken", 409)])
async def test_a_commit_announces_the_order_once_and_a_rollback_never(
    async_client: Any, subscriber: PusherSubscriber, channel: str, path: str, item: str, status: int
) -> None:
    response = await async_client.post(path, {"item": item, "channel": channel})
    assert response.status_code == status, response.content
    if status == 201:
        answer = response.json()
        assert (answer["pending"], answer["via"]) == (True, "after_commit")  # waited
        assert await Order.objects.filter(pk=answer["id"]).aexists()
        expected = [("created", {"id": answer["id"], "item": item})]
        assert await arrived(subscriber, channel) == expected
    else:  # rolled back: neither the order nor its announcement
        assert not await Order.objects.aexists()
        assert await arrived(subscriber, channel) == []


async def test_outside_a_transaction_it_is_sent_at_once(
    async_client: Any, subscriber: PusherSubscriber, channel: str
) -> None:
    response = await async_client.post("/orders/unsaved/", {"item": "cup", "channel": channel})
    answer = response.json()
    assert (answer["pending"], answer["via"]) == (False, "after_commit")
    assert await arrived(subscriber, channel) == [("created", {"id": answer["id"], "item": "cup"})]


@pytest.mark.parametrize(("item", "status"), [("mug", 201), ("broken", 409)])
async def test_a_middlewares_transaction_holds_the_outbox_row_of_an_async_view(
    async_client: Any, channel: str, item: str, status: int
) -> None:
    """Only with ``ASYNC_MIDDLEWARE=sync-atomic``: the row commits or rolls back with the
    order (the relay's delivery of a row is tests/outbox's)."""
    path = "/atomic/orders/outbox/"
    response = await async_client.post(path, {"item": item, "channel": channel})
    assert response.status_code == status, response.content
    rows = [row async for row in OutboxRow.objects.values("message_id", "channels", "state")]
    if status == 201:
        message_id = response.json()["message_id"]
        assert rows == [{"message_id": message_id, "channels": f'["{channel}"]', "state": 0}]
    else:
        assert rows == [] and not await Order.objects.aexists()


async def test_a_task_that_outlives_its_async_to_sync_has_nothing_to_join(
    subscriber: PusherSubscriber, channel: str
) -> None:
    """A publish from a task that the code awaited through async_to_sync() started and left
    running: the thread no longer waits for it, so it cannot join that thread's transaction
    (nor wait for it): it is sent at once."""
    loop = asyncio.get_running_loop()
    go = asyncio.Event()

    async def later() -> Receipt:
        await go.wait()
        return await broadcast.achannel(channel, {"n": 1}, "late", send="after_commit")

    async def start() -> asyncio.Task[Receipt]:
        return loop.create_task(later())

    def in_a_transaction() -> asyncio.Task[Receipt]:
        with transaction.atomic():
            task = async_to_sync(start)()  # returns; the task goes on
            loop.call_soon_threadsafe(go.set)
            asyncio.run_coroutine_threadsafe(asyncio.wait([task]), loop).result(30)
        return task

    task = await sync_to_async(in_a_transaction)()
    assert task.result().pending is False
    assert await arrived(subscriber, channel) == [("late", {"n": 1})]


async def test_a_thread_busy_elsewhere_is_an_error_not_a_hang(
    monkeypatch: pytest.MonkeyPatch, subscriber: PusherSubscriber, channel: str
) -> None:
    """The awaiting thread runs other code of the same async code meanwhile, which itself
    waits for something on the event loop: asking that thread would wait forever, so it is
    an error (after ``CALLER_TIMEOUT``, made short here)."""
    monkeypatch.setattr(django_transaction, "CALLER_TIMEOUT", 0.5)
    busy = threading.Event()
    released = asyncio.Event()

    async def wait_for_release() -> None:
        await released.wait()

    def elsewhere() -> None:  # runs in the awaiting thread, and waits on the loop
        busy.set()
        async_to_sync(wait_for_release)()

    async def scenario() -> None:
        other = asyncio.ensure_future(sync_to_async(elsewhere)())
        await asyncio.to_thread(busy.wait, 30)
        with pytest.raises(RuntimeError, match=r"did not answer within 0\.5 s"):
            await broadcast.achannel(channel, {"n": 2}, "busy", send="after_commit")
        released.set()
        await other  # that code ends

    await sync_to_async(async_to_sync(scenario))()
    assert await arrived(subscriber, channel) == []


def doc_block(name: str) -> str:
    """The python block named ``name`` (``<!-- snippet: NAME -->``) of docs/background.md."""
    marker = re.escape(f"<!-- snippet: {name} -->")
    found = re.search(rf"{marker}\s*```python\n(.*?)^```", DOCS.read_text("utf-8"), re.S | re.M)
    assert found, f"docs/background.md has no block {name!r}"
    return found.group(1)


@pytest.fixture
async def docs_block() -> AsyncIterator[dict[str, Any]]:
    """The docs' async-view block, run as written (its Broadcast is the memory driver)."""
    namespace: dict[str, Any] = {"__name__": "docs_block"}
    exec(doc_block("after-commit-django-async"), namespace)
    yield namespace
    await namespace["broadcast"].aclose()


def recorded(namespace: dict[str, Any]) -> list[Any]:
    return [m.data for m in namespace["broadcast"].driver("memory").driver.messages]


async def test_the_docs_async_view_publishes_once_committed(docs_block: dict[str, Any]) -> None:
    order = await Order.objects.acreate(item="mug")
    await docs_block["ship"](order)
    assert (await Order.objects.aget(pk=order.pk)).status == "shipped"
    assert recorded(docs_block) == [{"status": "shipped"}]


async def test_the_docs_async_view_inside_a_rolled_back_transaction_publishes_nothing(
    docs_block: dict[str, Any],
) -> None:
    order = await Order.objects.acreate(item="mug")

    def undone() -> None:
        with transaction.atomic():
            async_to_sync(docs_block["ship"])(order)  # its atomic() is a savepoint of this one
            raise Broken("undo")

    with pytest.raises(Broken):
        await sync_to_async(undone)()
    assert (await Order.objects.aget(pk=order.pk)).status == "new"
    assert recorded(docs_block) == []
