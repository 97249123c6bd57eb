"""Django's own test runner: TestCase with captureOnCommitCallbacks, TransactionTestCase with
real commits, Django's test client throughout."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.test import TestCase, TransactionTestCase

from broadcasting import InputError
from broadcasting.testing import fake

from .models import Order
from .views import broadcast


def published() -> list[Any]:
    return [message.data for message in broadcast.driver("memory").driver.messages]


class Clean:
    def setUp(self) -> None:
        broadcast.driver("memory").driver.clear()


class CapturedCommitTests(Clean, TestCase):
    """TestCase wraps each test in a transaction that never commits: captureOnCommitCallbacks
    runs what would run at commit."""

    def test_the_publish_is_an_on_commit_callback(self) -> None:
        with self.captureOnCommitCallbacks(execute=False) as callbacks:
            response = self.client.post("/orders/", {"item": "mug"})
        assert response.status_code == 200
        assert response.json()["pending"]
        assert response.json()["via"] == "after_commit"
        assert len(callbacks) == 1
        assert published() == []  # not sent: nothing committed
        callbacks[0]()
        assert published() == [{"id": response.json()["id"], "item": "mug"}]

    def test_executed_callbacks_publish(self) -> None:
        with self.captureOnCommitCallbacks(execute=True):
            self.client.post("/orders/", {"item": "mug"})
        assert [d["item"] for d in published()] == ["mug"]

    def test_a_rollback_leaves_no_callback(self) -> None:
        with self.captureOnCommitCallbacks(execute=True) as callbacks:
            response = self.client.post("/orders/", {"item": "broken"})
        assert response.status_code == 409
        assert callbacks == []
        assert published() == []
        assert not Order.objects.exists()

    def test_the_fake_records_when_the_callbacks_run(self) -> None:
        with fake() as recorded, self.captureOnCommitCallbacks(execute=True):
            self.client.post("/orders/", {"item": "mug"})
            recorded.assert_nothing_sent()  # still inside the test's transaction
        recorded.assert_sent("created", "orders", times=1, via="after_commit")


class RealCommitTests(Clean, TransactionTestCase):
    """TransactionTestCase commits for real: on_commit callbacks run at the commit."""

    def test_commit_publishes_once_saved(self) -> None:
        response = self.client.post("/orders/", {"item": "mug"})
        order = Order.objects.get()
        assert published() == [{"id": order.pk, "item": "mug"}]
        assert response.json()["id"] == order.pk

    def test_an_explicit_alias(self) -> None:
        self.client.post("/orders/", {"item": "mug", "using": "default"})
        assert [d["item"] for d in published()] == ["mug"]

    def test_rollback_publishes_nothing(self) -> None:
        response = self.client.post("/orders/", {"item": "broken"})
        assert response.status_code == 409
        assert not Order.objects.exists()
        assert published() == []

    def test_a_rolled_back_savepoint_drops_its_publish(self) -> None:
        self.client.post("/orders/nested/")
        assert published() == [{"step": "outer"}, {"step": "released"}]

    def test_a_failing_publish_is_logged_and_the_view_answers(self) -> None:
        with self.assertLogs("broadcasting.background", "ERROR") as logs:
            response = self.client.post("/orders/failing/", {"item": "mug"})
        assert response.status_code == 200
        assert Order.objects.exists()
        [line] = logs.output
        assert response.json()["message_id"] in line
        assert "service unavailable" in line

    def test_the_fake_records_outbox_publishes_at_commit(self) -> None:
        with fake() as recorded:
            response = self.client.post("/orders/outbox/", {"item": "mug"})
        assert response.json()["via"] == "outbox"
        assert response.json()["pending"]
        recorded.assert_sent("created", data={"id": response.json()["id"]}, via="outbox")
        assert published() == []  # the fake took it: no row, no driver


class AliasTests(Clean, TestCase):
    def test_an_unknown_alias_is_an_input_error_before_anything_is_sent(self) -> None:
        with self.assertRaisesMessage(InputError, "transaction='replica': no such Django database"):
            broadcast.channel("orders", {"id": 1}, send="after_commit", transaction="replica")
        assert published() == []

    def test_the_adapter_writes_with_the_alias_cursor_inside_atomic(self) -> None:
        from broadcasting.contrib.django.transaction import DjangoTransaction

        adapted = DjangoTransaction("default")
        assert adapted.paramstyle == "format" and adapted.dialect in (
            "sqlite",
            "postgresql",
            "mysql",
        )
        try:
            with transaction.atomic():
                assert adapted.active()
                adapted.execute("INSERT INTO shop_order (item, status) VALUES (%s, %s)", ["x", "y"])
                assert Order.objects.filter(item="x").exists()
                raise ValueError("roll back")
        except ValueError:
            pass
        assert not Order.objects.filter(item="x").exists()
