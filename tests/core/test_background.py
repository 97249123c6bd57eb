"""How a publish is sent: the ``send=`` / ``broadcast_send`` / ``SEND`` choice, and the two
hooks every publish that is not sent at once goes through (docs/hooks.md, docs/background.md).

The transactions here are a small in-test class with the ``Transaction`` protocol: the
adapters for real databases are tested against them in tests/background/.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from broadcasting import Broadcast, InputError, PublishError, Receipt
from broadcasting.plugin import Driver, Message, hookimpl


class FakeTransaction:
    """A transaction that commits when the test says: no database behind it."""

    dialect = "sqlite"
    paramstyle = "qmark"

    def __init__(self) -> None:
        self.open = True
        self.callbacks: list[Callable[[], object]] = []

    def active(self) -> bool:
        return self.open

    def on_commit(self, callback: Callable[[], object]) -> None:
        self.callbacks.append(callback)

    def execute(self, sql: str, params: Sequence[Any]) -> None:
        raise AssertionError("after_commit writes nothing")

    def commit(self) -> None:
        self.open = False
        for callback in self.callbacks:
            callback()

    def rollback(self) -> None:
        self.open = False
        self.callbacks.clear()


class Adapter:
    """A broadcasting_transaction plugin that adapts FakeTransaction objects."""

    def __init__(self) -> None:
        self.seen: list[object] = []

    @hookimpl
    def broadcasting_transaction(self, broadcast: Broadcast, transaction: object) -> Any:
        self.seen.append(transaction)
        return transaction if isinstance(transaction, FakeTransaction) else None


def _memory(**config: Any) -> tuple[Broadcast, Adapter]:
    adapter = Adapter()
    return Broadcast({"DRIVER": "memory", **config}, plugins=[adapter]), adapter


def _delivered(broadcast: Broadcast) -> list[Message]:
    driver: Any = broadcast.driver().driver
    return list(driver.messages)


def test_hook_broadcasting_transaction() -> None:
    broadcast, adapter = _memory()
    tx = FakeTransaction()
    receipt = broadcast.channel("orders", {"n": 1}, "saved", send="after_commit", transaction=tx)
    assert adapter.seen == [tx]
    assert receipt.pending and receipt.via == "after_commit" and receipt.ids == ()
    assert _delivered(broadcast) == []
    tx.commit()
    [sent] = _delivered(broadcast)
    assert (sent.channels, sent.event, sent.id, sent.via) == (
        ("orders",),
        "saved",
        receipt.message_id,
        "after_commit",
    )


def test_a_rolled_back_after_commit_publish_is_never_sent() -> None:
    broadcast, _ = _memory()
    tx = FakeTransaction()
    broadcast.channel("orders", "x", send="after_commit", transaction=tx)
    tx.rollback()
    assert _delivered(broadcast) == []


def test_after_commit_outside_a_transaction_is_sent_at_once() -> None:
    broadcast, _ = _memory()
    tx = FakeTransaction()
    tx.open = False
    receipt = broadcast.channel("orders", "x", send="after_commit", transaction=tx)
    assert not receipt.pending and receipt.via == "after_commit"
    assert [m.via for m in _delivered(broadcast)] == ["after_commit"]
    # and with no transaction at all (no Django loaded, nothing passed)
    receipt = broadcast.channel("orders", "y", send="after_commit")
    assert not receipt.pending and len(_delivered(broadcast)) == 2


async def test_after_commit_on_the_async_path_sends_as_a_task() -> None:
    broadcast, _ = _memory()
    tx = FakeTransaction()
    receipt = await broadcast.achannel("orders", "x", send="after_commit", transaction=tx)
    assert receipt.pending
    tx.commit()  # an async commit calls back on the loop's thread: the publish is a task
    assert _delivered(broadcast) == []
    import asyncio

    for _ in range(20):
        await asyncio.sleep(0)
        if _delivered(broadcast):
            break
    assert [m.id for m in _delivered(broadcast)] == [receipt.message_id]


def test_a_failure_after_commit_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    class Refuses:
        @hookimpl(tryfirst=True)
        def broadcasting_publish(self, message: Message) -> Receipt:
            raise PublishError("the service said no", driver="memory")

    broadcast = Broadcast({"DRIVER": "memory"}, plugins=[Adapter(), Refuses()])
    tx = FakeTransaction()
    receipt = broadcast.channel("orders", "x", send="after_commit", transaction=tx)
    with caplog.at_level(logging.ERROR, logger="broadcasting.background"):
        tx.commit()  # nothing raised into the committing code
    [record] = caplog.records
    assert receipt.message_id in record.getMessage()
    assert "failed on orders: the service said no" in record.getMessage()


def test_hook_broadcasting_defer() -> None:
    class Queue:
        def __init__(self) -> None:
            self.queued: list[tuple[str, Message, object]] = []

        @hookimpl
        def broadcasting_defer(
            self, broadcast: Broadcast, driver: Driver, message: Message, transaction: Any
        ) -> Receipt | None:
            if message.via != "carrier-pigeon":
                return None
            self.queued.append((driver.name, message, transaction))
            return Receipt(driver.name, message.event, message.channels, message.id, pending=True)

    queue = Queue()
    broadcast = Broadcast({"DRIVER": "memory", "SEND": "carrier-pigeon"}, plugins=[queue])
    receipt = broadcast.channel(["a", "b", "a"], {"n": 1}, "note")
    [(name, message, transaction)] = queue.queued
    assert (name, message.channels, message.via, transaction) == (
        "memory",
        ("a", "b"),
        "carrier-pigeon",
        None,
    )
    # the core sets the receipt's via from the message
    assert receipt.pending and receipt.via == "carrier-pigeon"
    assert receipt.message_id == message.id
    assert _delivered(broadcast) == []


class Shipped:
    broadcast_send = "after_commit"

    def broadcast_on(self) -> str:
        return "orders"


def test_the_call_then_the_event_then_the_config_choose() -> None:
    broadcast, _ = _memory(SEND="after_commit")
    tx = FakeTransaction()
    assert broadcast.channel("o", "x", transaction=tx).via == "after_commit"  # the config
    assert broadcast.channel("o", "x", send="now").via == "now"  # the call wins
    plain, _ = _memory()
    assert plain.channel(Shipped(), transaction=tx).pending  # the event's choice
    assert plain.channel(Shipped(), send="now").via == "now"


def test_an_unknown_way_or_transaction_is_refused_before_anything_is_sent() -> None:
    broadcast, _ = _memory()
    with pytest.raises(InputError, match="send='celery': no installed plugin sends that way"):
        broadcast.channel("o", "x", send="celery")
    with pytest.raises(InputError, match="send must name how to send"):
        broadcast.channel("o", "x", send="")
    with pytest.raises(TypeError, match="transaction=dict: no plugin adapts it"):
        broadcast.channel("o", "x", send="after_commit", transaction={})
    with pytest.raises(TypeError, match="transaction= applies to"):
        broadcast.channel("o", "x", send="now", transaction=FakeTransaction())

    class BadEvent(Shipped):
        broadcast_send = 3  # type: ignore[assignment]

    with pytest.raises(InputError, match=r"BadEvent\.broadcast_send must name"):
        broadcast.channel(BadEvent())
    assert _delivered(broadcast) == []


def test_a_pending_receipt_says_so() -> None:
    receipt = Receipt("pusher", "saved", ("orders",), "m1", via="outbox", pending=True)
    assert str(receipt) == "pusher: 'saved' -> orders (id m1, pending: outbox)"


def test_send_to_user_takes_the_same_choice() -> None:
    broadcast = Broadcast({"DRIVER": "memory"}, plugins=[Adapter()])
    tx = FakeTransaction()
    receipt = broadcast.send_to_user("7", "hello", {"n": 1}, send="after_commit", transaction=tx)
    assert receipt.pending and _delivered(broadcast) == []
    tx.commit()
    [sent] = _delivered(broadcast)
    assert sent.channels == ("#server-to-user-7",) and sent.via == "after_commit"
