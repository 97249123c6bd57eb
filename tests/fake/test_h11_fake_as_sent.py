"""The fake, as an application's tests meet it (a Django view with send="after_commit", a
FastAPI endpoint): what it records for a publish that waits for a commit, what ``data=``
matches, and what a failing assertion shows.

Transactions are SQLAlchemy ``Session``s on an in-memory SQLite database: real commits and
rollbacks, which the after-commit path and the outbox take as they take Django's.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from broadcasting import Broadcast, BroadcastEvent
from broadcasting.drivers.memory import BroadcastMemoryDriver
from broadcasting.testing import BroadcastFake


@dataclass
class OrderShipped(BroadcastEvent):
    status: str
    ids: tuple[int, ...] = ()

    def broadcast_on(self) -> str:
        return "orders"


@dataclass
class Renamed(OrderShipped):
    def broadcast_as(self) -> str:
        return "OrderShipped"


@pytest.fixture
def broadcast() -> Iterator[Broadcast]:
    made = Broadcast({"DRIVER": "memory"})
    yield made
    made.close()


@pytest.fixture
def engine() -> Iterator[Engine]:
    made = create_engine("sqlite://")
    yield made
    made.dispose()


def changed_after_the_call(broadcast: Broadcast, engine: Engine, send: str) -> None:
    """A view that publishes, then changes the payload and the event before its commit."""
    with Session(engine) as session, session.begin():
        session.execute(text("SELECT 1"))
        payload = {"status": "pending"}
        event = OrderShipped("pending")
        broadcast.channel("orders", payload, "updated", send=send, transaction=session)
        broadcast.channel(event, send=send, transaction=session)
        payload["status"] = "shipped"
        event.status = "shipped"


@pytest.mark.parametrize("send", ["after_commit", "outbox"])
def test_a_publish_waiting_for_its_commit_is_recorded_as_it_was_at_the_call(
    broadcast: Broadcast, engine: Engine, broadcast_fake: BroadcastFake, send: str
) -> None:
    """The message's text is made at the call, and that is what goes out at the commit (or
    into the outbox's row): the fake recorded ``data`` and the event object as they were at
    the commit, so a test asserting the later state passed while subscribers got the first."""
    changed_after_the_call(broadcast, engine, send)

    [updated] = broadcast_fake.assert_sent("updated", times=1, via=send)
    assert updated.text == '{"status":"pending"}'
    assert updated.data == {"status": "pending"}
    broadcast_fake.assert_sent(OrderShipped("pending"), times=1)
    broadcast_fake.assert_not_sent(data={"status": "shipped"})
    broadcast_fake.assert_not_sent(OrderShipped("shipped"))


def test_the_real_driver_sends_what_was_given_at_the_call(
    broadcast: Broadcast, engine: Engine
) -> None:
    """What the fake must agree with: the memory driver, after the same commit."""
    changed_after_the_call(broadcast, engine, "after_commit")
    memory = broadcast.driver(BroadcastMemoryDriver).driver
    assert [m.text for m in memory.messages] == [
        '{"status":"pending"}',
        '{"status":"pending","ids":[]}',
    ]


def test_data_matches_the_payload_as_subscribers_receive_it(
    broadcast: Broadcast, broadcast_fake: BroadcastFake
) -> None:
    """A failure listed ``{"ids":[1,2],"3":"x"}`` as sent instead of ``data={"ids": [1, 2],
    "3": "x"}``: the payload was compared as given (a tuple, an int key) only."""
    payload: dict[Any, Any] = {"ids": (1, 2), 3: "x"}  # an int key: json.dumps makes it text
    broadcast.channel("orders", payload, "updated")
    broadcast.channel(OrderShipped("new", (1, 2)))

    broadcast_fake.assert_sent("updated", data={"ids": [1, 2], "3": "x"})
    broadcast_fake.assert_sent("updated", data={"ids": (1, 2), 3: "x"})  # as given, still
    broadcast_fake.assert_sent(OrderShipped, data={"status": "new", "ids": [1, 2]})
    broadcast_fake.assert_not_sent(data={"ids": [2, 1], "3": "x"})
    # a function is given the payload as it was given
    broadcast_fake.assert_sent(data=lambda d: isinstance(d, dict) and d.get("ids") == (1, 2))


def failure(check: Any, *args: Any, **kwargs: Any) -> str:
    with pytest.raises(AssertionError) as caught:
        check(*args, **kwargs)
    return str(caught.value)


def test_a_failure_names_what_waits_for_a_commit_that_never_came(
    broadcast: Broadcast, engine: Engine, broadcast_fake: BroadcastFake
) -> None:
    """Django's TestCase (pytest-django's ``django_db``) never commits: an after-commit
    publish is never recorded, and the failure said only ``nothing was sent``."""
    session = Session(engine)
    session.begin()
    session.execute(text("SELECT 1"))
    broadcast.channel("orders", {"id": 1}, "created", send="after_commit", transaction=session)

    said = failure(broadcast_fake.assert_sent, "created")
    assert "nothing was sent" in said
    assert "waiting for a commit (1)" in said
    assert "'created' on orders" in said
    assert "captureOnCommitCallbacks" in said

    session.commit()
    broadcast_fake.assert_sent("created", times=1)
    said = failure(broadcast_fake.assert_sent, "created", times=2)
    assert "waiting for a commit" not in said  # it came
    session.close()


def test_a_rolled_back_publish_stays_unrecorded(
    broadcast: Broadcast, engine: Engine, broadcast_fake: BroadcastFake
) -> None:
    with Session(engine) as session:
        session.begin()
        session.execute(text("SELECT 1"))
        broadcast.channel("orders", {"id": 1}, "created", send="after_commit", transaction=session)
        session.rollback()
    broadcast_fake.assert_nothing_sent()
    broadcast_fake.assert_not_sent("created")


def test_a_failure_on_an_event_class_shows_each_publishs_event_object(
    broadcast: Broadcast, broadcast_fake: BroadcastFake
) -> None:
    """Asserting a class, an object or a way of sending listed lines that looked like the
    criteria: ``'OrderShipped' on orders`` for a name-only publish, for another class's event
    named the same, and for a publish sent now when ``via="after_commit"`` was asked."""
    broadcast.channel("orders", {"status": "new", "ids": []}, "OrderShipped")
    broadcast.channel(Renamed("new"))

    said = failure(broadcast_fake.assert_sent, OrderShipped("new"))
    lines = said.splitlines()[2:]
    assert "(no event object)" in lines[0]
    assert "Renamed(status='new', ids=())" in lines[1]

    said = failure(broadcast_fake.assert_sent, event=Renamed, times=2)
    assert "(no event object)" in said  # the name-only one, named as Renamed publishes
    assert "(event object" not in said  # the Renamed one matched: nothing to add

    said = failure(broadcast_fake.assert_sent, "OrderShipped", via="after_commit")
    assert said.count("(via now)") == 2

    # without such criteria, the lines are as before
    said = failure(broadcast_fake.assert_sent, "shipped")
    assert "event object" not in said and "Renamed(" not in said and "via now" not in said
