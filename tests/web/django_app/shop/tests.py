"""The app under Django's own test runner (``manage.py test shop``)."""

from __future__ import annotations

import json
from io import StringIO
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import TestCase, override_settings

from broadcasting.contrib.django import broadcast
from broadcasting.contrib.django.checks import check_settings
from broadcasting.testing import fake

from .broadcasting import HEARD
from .models import Occupied, Order

SOCKET = "1234.5678"


def memory() -> Any:
    return broadcast.driver("memory").driver


class EndpointTests(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.ann = get_user_model().objects.create_user("ann")
        cls.bob = get_user_model().objects.create_user("bob")
        cls.order = Order.objects.create(customer=cls.ann)

    def fields(self, channel: str) -> dict[str, str]:
        return {"socket_id": SOCKET, "channel_name": channel}

    def assert_signed(self, response: Any, channel: str) -> None:
        assert response.status_code == 200, response.content
        assert memory().verify(response.json(), socket_id=SOCKET, channel=channel)

    def test_a_sync_rule_queries_behind_sync_views(self) -> None:
        self.client.force_login(self.ann)
        channel = f"private-orders.{self.order.pk}"
        self.assert_signed(self.client.post("/broadcasting/auth", self.fields(channel)), channel)

    def test_an_async_rule_behind_sync_views_sees_the_tests_data(self) -> None:
        # async_to_sync: its query runs on this thread's connection, inside the test's transaction
        self.client.force_login(self.ann)
        channel = f"private-async-orders.{self.order.pk}"
        self.assert_signed(self.client.post("/broadcasting/auth", self.fields(channel)), channel)

    async def test_a_sync_rule_behind_async_views_runs_off_the_event_loop(self) -> None:
        await self.async_client.aforce_login(self.ann)
        channel = f"private-orders.{self.order.pk}"
        response = await self.async_client.post("/async/broadcasting/auth", self.fields(channel))
        self.assert_signed(response, channel)

    async def test_an_async_rule_behind_async_views(self) -> None:
        await self.async_client.aforce_login(self.ann)
        channel = f"private-async-orders.{self.order.pk}"
        response = await self.async_client.post("/async/broadcasting/auth", self.fields(channel))
        self.assert_signed(response, channel)

    def test_a_refusal_is_no_warning_on_django_request(self) -> None:
        self.client.force_login(self.bob)
        channel = f"private-orders.{self.order.pk}"
        with self.assertNoLogs("django.request", "WARNING"):
            response = self.client.post("/broadcasting/auth", self.fields(channel))
        assert response.status_code == 403
        with self.assertLogs("django.request", "DEBUG") as logs:
            self.client.post("/broadcasting/auth", self.fields(channel))
        assert logs.records[0].levelname == "DEBUG"

    def test_sign_in_data_comes_from_the_endpoints_setting(self) -> None:
        self.client.force_login(self.ann)
        response = self.client.post("/broadcasting/user-auth", {"socket_id": SOCKET})
        assert response.status_code == 200
        assert json.loads(response.json()["user_data"])["user_info"] == {"name": "ann"}

    async def test_a_sync_webhook_handler_writes_behind_async_views(self) -> None:
        headers, body = memory().webhook_delivery([{"name": "channel_occupied", "channel": "c1"}])
        response = await self.async_client.post(
            "/async/broadcasting/webhook", body, content_type="application/json", headers=headers
        )
        assert response.json() == {"ok": True, "events": 1}
        assert await Occupied.objects.filter(channel="c1").acount() == 1

    def test_a_handler_added_without_parentheses_hears_every_event(self) -> None:
        HEARD.clear()
        events = [
            {"name": "channel_vacated", "channel": "c2"},
            {"name": "member_added", "channel": "presence-c2", "user_id": "7"},
        ]
        headers, body = memory().webhook_delivery(events)
        response = self.client.post(
            "/broadcasting/webhook", body, content_type="application/json", headers=headers
        )
        assert response.json() == {"ok": True, "events": 2}
        assert HEARD == ["channel_vacated", "member_added"]


class AppTests(TestCase):
    def test_the_page_has_the_browsers_config_and_no_secret(self) -> None:
        html = self.client.get("/page").content.decode()
        assert '<script type="application/json" id="broadcasting-config">' in html
        assert "shop-secret-value" not in html
        assert "</script><b>" not in html  # the override's markup is escaped
        start = html.index('id="broadcasting-config">') + len('id="broadcasting-config">')
        config = json.loads(html[start : html.index("</script>", start)])
        assert config["options"]["channelAuthorization"]["endpoint"] == "/broadcasting/auth"
        assert config["key"] == "shop-key"

    def test_override_settings_rebuilds_the_broadcast(self) -> None:
        before = broadcast.driver()
        assert before.name == "memory"
        with override_settings(BROADCASTING={"DRIVER": "null"}):
            assert broadcast.driver().name == "null"
            assert broadcast.rules.patterns[0] == "orders.{order_id}"  # kept
        assert broadcast.driver().name == "memory"
        assert broadcast.driver() is not before

    def test_the_checks_name_a_bad_config(self) -> None:
        with override_settings(BROADCASTING={"DRIVER": "no-such-driver"}):
            assert [e.id for e in check_settings()] == ["broadcasting.E002"]
        assert check_settings() == []

    def test_manage_py_broadcasting_send(self) -> None:
        out = StringIO()
        with fake() as sent:
            call_command("broadcasting", "send", '{"id": 7}', "--channel", "orders", stdout=out)
        sent.assert_sent("base-event", channel="orders", data={"id": 7}, times=1)
        assert "sent:" in out.getvalue()
