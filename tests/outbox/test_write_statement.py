"""The write path builds a publish's INSERT straight from the message (``insert_message``):
the same statement and parameters as the rows it stands for (``new_rows``, then
``insert_params``), on every database, whatever the channels and the payload."""

from __future__ import annotations

import pytest

from broadcasting._types import Message
from broadcasting.outbox import _sql
from broadcasting.outbox._row import new_rows


@pytest.mark.parametrize("dialect", _sql.DIALECTS)
@pytest.mark.parametrize(
    "channels",
    [("orders",), ('quote"and\\slash-é',), ("a", "b"), ("a", "b", "c", "d", "e")],
)
@pytest.mark.parametrize(("data", "text"), [({"id": 1}, '{"id":1}'), ("plain", "plain")])
def test_the_statement_of_a_message_is_the_statement_of_its_rows(
    dialect: str, channels: tuple[str, ...], data: object, text: str
) -> None:
    message = Message(channels, "shipped", data, text, "m-1", socket_id="1.2")  # type: ignore[arg-type]
    for _ in range(2):  # built, then from what was kept of it
        made = _sql.insert_message(dialect, "s.outbox", message, "pusher", 4, 12.5)
        rows = new_rows(message, "pusher", 4, 12.5)
        assert made == _sql.insert_params(dialect, "s.outbox", rows)
    if dialect == _sql.POSTGRESQL:  # one lock per channel, then the NOTIFY channel
        assert len(made[1]) == 10 * len(rows) + len(channels) + 1
        assert made[1][-1] == "outbox"
