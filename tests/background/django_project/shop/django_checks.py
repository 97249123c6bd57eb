"""The same project under pytest-django: ``transaction=True`` commits for real, the default
``django_db`` needs ``django_capture_on_commit_callbacks``. Run by test_django.py."""

from __future__ import annotations

from typing import Any

import pytest

from broadcasting.testing import BroadcastFake
from shop.models import Order
from shop.views import broadcast


@pytest.fixture(autouse=True)
def _clean() -> None:
    broadcast.driver("memory").driver.clear()


def published() -> list[Any]:
    return [message.data for message in broadcast.driver("memory").driver.messages]


@pytest.mark.django_db(transaction=True)
def test_commit_publishes(client: Any) -> None:
    response = client.post("/orders/", {"item": "mug"})
    assert published() == [{"id": response.json()["id"], "item": "mug"}]


@pytest.mark.django_db(transaction=True)
def test_rollback_publishes_nothing(client: Any) -> None:
    assert client.post("/orders/", {"item": "broken"}).status_code == 409
    assert published() == []
    assert not Order.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_the_fake_fixture_records_at_commit(client: Any, broadcast_fake: BroadcastFake) -> None:
    client.post("/orders/", {"item": "mug"})
    client.post("/orders/outbox/", {"item": "cup"})
    broadcast_fake.assert_sent("created", via="after_commit", times=1)
    broadcast_fake.assert_sent("created", via="outbox", times=1)


@pytest.mark.django_db
def test_without_transaction_true_capture_the_callbacks(
    client: Any, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        client.post("/orders/", {"item": "mug"})
    assert len(callbacks) == 1
    assert [d["item"] for d in published()] == ["mug"]
