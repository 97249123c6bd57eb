"""User code: a Django project, as docs/django.md and docs/web.md show it (urls, rules,
views, async views, the project's ``broadcast``).

Checked by mypy --strict (tests/typing/test_public_types.py), never run. Django ships no
types (django-stubs is not installed), so its own expressions are ``Any``: this module checks
what broadcasting's calls return, and leaves Django's ``Any`` alone.
"""
# mypy: disallow-any-expr=False

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from functools import partial
from typing import Any

from django.db import transaction  # type: ignore[import-untyped]
from django.http import HttpRequest, JsonResponse  # type: ignore[import-untyped]
from django.urls import URLPattern, include, path  # type: ignore[import-untyped]
from typing_extensions import assert_type

from broadcasting import Broadcast, BroadcastEvent, PrivateChannel, Receipt, WebhookEvent
from broadcasting.contrib.django import SettingsBroadcast
from broadcasting.contrib.django import broadcast as project_broadcast
from broadcasting.web import socket_id_from
from broadcasting.web.django import arequest_user, broadcasting_urls, request_user

broadcast = Broadcast({"DRIVER": "memory"})


def sign_in_data(request: HttpRequest, user: Any) -> dict[str, Any]:
    return {"id": str(user.pk), "user_info": {"name": user.get_username()}}


urls = broadcasting_urls(broadcast, user_data=sign_in_data, async_views=True, csrf=True)
assert_type(urls, list[URLPattern])
urlpatterns = [
    path("broadcasting/", include("broadcasting.contrib.django.urls")),
    path("", include(broadcasting_urls(broadcast, user=request_user))),
    path("a/", include(broadcasting_urls(broadcast, user=arequest_user))),
]


@dataclass
class OrderShipped(BroadcastEvent):
    order_id: int

    def broadcast_on(self) -> PrivateChannel:
        return PrivateChannel(f"orders.{self.order_id}")


@project_broadcast.rule("orders.{order_id:int}")
def order_owner(user: Any, order_id: int) -> bool:
    return bool(user.is_staff)


@project_broadcast.on_webhook("channel_occupied")
def occupied(event: WebhookEvent) -> None:
    kind, _, order_id = (event.channel or "").partition(".")
    assert_type(kind, str)
    assert_type(order_id, str)


def ship(request: HttpRequest, order_id: int) -> JsonResponse:
    with transaction.atomic():
        event = OrderShipped(order_id).to_others(socket_id_from(request.headers))
        transaction.on_commit(partial(broadcast.channel, event))
        receipt = project_broadcast.channel(
            f"private-orders.{order_id}", {"id": order_id}, "shipped", send="after_commit"
        )
        assert_type(receipt, Receipt)
    return JsonResponse({"shipped": order_id})


async def received(request: HttpRequest, order_id: int) -> JsonResponse:
    receipt = await project_broadcast.achannel(
        OrderShipped(order_id).to_others(socket_id_from(request.META))
    )
    assert_type(receipt, Receipt)
    return JsonResponse({"received": order_id})


own = SettingsBroadcast()


@own.rule("invoices.{invoice_id:int}")
def invoice_owner(user: Any, invoice_id: int) -> bool:
    return bool(user.is_staff)


@own.on_webhook
async def every_event(event: WebhookEvent) -> str:
    return event.name


def settings_broadcast(event: WebhookEvent) -> None:
    assert_type(project_broadcast, Broadcast)
    assert_type(own.channel("orders", "x"), Receipt)
    assert_type(invoice_owner(None, 1), bool)  # a rule keeps its type
    assert_type(asyncio.run(every_event(event)), str)
    assert_type(order_owner(None, 1), bool)
    own.chanel("orders", "x")  # type: ignore[attr-defined]  # a typo is an error, not Any
