"""The app under pytest-django (run by tests/web/test_django_app.py, with this folder's
pytest.ini): its fixtures, the ``broadcast_fake`` fixture, and the ``settings`` fixture."""

from __future__ import annotations

import json
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.template import Context, Template
from shop.models import Order

from broadcasting.contrib.django import broadcast

SOCKET = "1234.5678"


@pytest.fixture
def order(django_user_model: Any) -> Any:
    return Order.objects.create(customer=django_user_model.objects.create_user("ann"))


@pytest.fixture
async def aorder(django_user_model: Any) -> Any:
    user = await django_user_model.objects.acreate_user("ann")
    return await Order.objects.acreate(customer=user)


@pytest.mark.django_db
def test_the_owner_may_subscribe(client: Any, order: Any) -> None:
    client.force_login(order.customer)
    channel = f"private-orders.{order.pk}"
    answer = client.post("/broadcasting/auth", {"socket_id": SOCKET, "channel_name": channel})
    assert answer.status_code == 200
    memory = broadcast.driver("memory").driver
    assert memory.verify(answer.json(), socket_id=SOCKET, channel=channel)


# transaction=True: an async test runs on pytest-asyncio's loop, and sync_to_async runs the
# ORM in another thread, with another connection, which must see committed data
@pytest.mark.django_db(transaction=True)
async def test_a_sync_rule_queries_behind_async_views(async_client: Any, aorder: Any) -> None:
    await async_client.aforce_login(aorder.customer)
    channel = f"private-orders.{aorder.pk}"
    fields = {"socket_id": SOCKET, "channel_name": channel}
    answer = await async_client.post("/async/broadcasting/auth", fields)
    assert answer.status_code == 200, answer.content


@pytest.mark.django_db
def test_a_guest_is_refused(client: Any, order: Any) -> None:
    fields = {"socket_id": SOCKET, "channel_name": f"private-orders.{order.pk}"}
    assert client.post("/broadcasting/auth", fields).status_code == 403


def test_the_settings_fixture_rebuilds_the_broadcast(settings: Any) -> None:
    assert broadcast.driver().name == "memory"
    settings.BROADCASTING = {"DRIVER": "null"}
    assert broadcast.driver().name == "null"


def test_and_puts_it_back_afterwards() -> None:
    assert broadcast.driver().name == "memory"


def test_the_fake_records_what_the_project_publishes(broadcast_fake: Any) -> None:
    broadcast.channel("orders", {"id": 1}, "shipped")
    broadcast_fake.assert_sent("shipped", channel="orders", data={"id": 1}, times=1)


def test_the_template_tag(settings: Any) -> None:
    settings.BROADCASTING_CLIENT = {"wsHost": "ws.example.com"}
    html = Template(
        '{% load broadcasting %}{% broadcasting_client_config "pusher" element_id="cfg" %}'
    ).render(Context())
    start = html.index(">") + 1
    config = json.loads(html[start : html.rindex("</script>")])
    assert html.startswith('<script type="application/json" id="cfg">')
    assert config["options"]["wsHost"] == "ws.example.com"
    assert config["echo"]["authEndpoint"] == "/broadcasting/auth"


def test_manage_py_broadcasting_drivers() -> None:
    out = StringIO()
    call_command("broadcasting", "drivers", "--json", stdout=out)
    assert {"memory", "pusher"} <= {row["name"] for row in json.loads(out.getvalue())}
