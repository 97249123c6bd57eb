"""What docs/django.md claims, checked inside the project it builds.

tests/web/test_django_guide.py copies this file into that project as
``test_guide_outcomes.py``, where the guide's own ``pytest`` runs it with
pytest-django and the test settings (the ``memory`` driver). ``GUIDE_VARIANT``
says which variant of the project this is: ``wsgi`` (sync endpoints, sync
rules) or ``asgi`` (``async_views=True``, async rules).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from typing import Any

import pytest
from django.contrib.auth.models import AnonymousUser
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse
from django.template import Context, Template
from django.test import Client
from django.urls import include, path, resolve, reverse
from django.views.decorators.csrf import ensure_csrf_cookie
from mysite.broadcast import broadcast
from orders.events import OrderReceived, OrderShipped
from orders.models import Order

from broadcasting import Broadcast, PrivateChannel
from broadcasting.web.django import broadcasting_urls

pytestmark = pytest.mark.django_db

VARIANT = os.environ["GUIDE_VARIANT"]
ASYNC = VARIANT == "asgi"
SOCKET = "1234.5678"
memory: Any = broadcast.driver("memory").driver


# -- the URLconf of the tests marked urls(__name__): the project's, and a few more mounts -----


@ensure_csrf_cookie
def page(request: HttpRequest) -> HttpResponse:
    """A page that sets the CSRF cookie, as the page holding pusher-js does."""
    return HttpResponse(status=204)


def as_is(request: HttpRequest) -> Any:
    """A user= that returns request.user as it is, AnonymousUser included (what not to do)."""
    return request.user


async def aas_is(request: HttpRequest) -> Any:
    """The same for async views, as the guide says to write it: ``await request.auser()``."""
    return await request.auser()


#: Rules of the other kind than their views: a sync rule (and handler) that queries, behind
#: async views (it runs in a thread, as a sync user function does), and an async one behind
#: sync views.
mismatched = Broadcast({"DRIVER": "memory"})


@mismatched.rule("sync.{order_id}")
def sync_rule(user: Any, order_id: str) -> bool:
    return Order.objects.filter(pk=order_id, customer=user).exists()


@mismatched.rule("async.{order_id}")
async def async_rule(user: Any, order_id: str) -> bool:
    return await Order.objects.filter(pk=order_id, customer=user).aexists()


@mismatched.on_webhook("member_added")
def sync_handler(event: Any) -> None:
    Order.objects.filter(pk=1).update(received=True)


urlpatterns = [
    path("", include("mysite.urls")),
    path("page", page),
    path(
        "as-is/",
        include(broadcasting_urls(broadcast, user=aas_is if ASYNC else as_is, async_views=ASYNC)),
    ),
    path("lazy/", include(broadcasting_urls(broadcast, user=as_is, async_views=True))),
    path("csrf/", include(broadcasting_urls(broadcast, csrf=True, async_views=ASYNC))),
    path("sync-rule/", include(broadcasting_urls(mismatched, async_views=True))),
    path("async-rule/", include(broadcasting_urls(mismatched))),
]
own_urls = pytest.mark.urls(__name__)


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture
def ada(django_user_model: Any) -> Any:
    return django_user_model.objects.create_user("ada", first_name="Ada", last_name="Lovelace")


@pytest.fixture
def bob(django_user_model: Any) -> Any:
    return django_user_model.objects.create_user("bob")  # no first or last name


@pytest.fixture
def order(ada: Any) -> Order:
    return Order.objects.create(customer=ada)


def as_user(user: Any = None, **options: Any) -> Client:
    client = Client(**options)
    if user is not None:
        client.force_login(user)
    return client


def subscribe(client: Client, channel: str, prefix: str = "") -> Any:
    return client.post(
        f"{prefix}/broadcasting/auth", {"socket_id": SOCKET, "channel_name": channel}
    )


# -- where things live ------------------------------------------------------------------------


def test_the_endpoints_are_the_variants_views() -> None:
    view = resolve("/broadcasting/auth").func
    assert asyncio.iscoroutinefunction(view) is ASYNC
    assert reverse("broadcasting_auth") == "/broadcasting/auth"
    assert reverse("broadcasting_user_auth") == "/broadcasting/user-auth"
    assert reverse("broadcasting_webhook") == "/broadcasting/webhook"
    rendered = Template('{% url "broadcasting_auth" %}').render(Context())
    assert rendered == "/broadcasting/auth"


def test_the_broadcast_keeps_the_settings_it_was_made_from(settings: Any) -> None:
    settings.BROADCASTING = {"DRIVER": "log"}
    assert broadcast.driver().name == "memory"  # made at import, from the test settings


# -- the rules, with Django's User -------------------------------------------------------------


def test_the_customer_gets_a_signed_answer(order: Order) -> None:
    for channel in (f"private-orders.{order.pk}", f"private-encrypted-orders.{order.pk}"):
        answer = subscribe(as_user(order.customer), channel)
        assert answer.status_code == 200, (channel, answer.content)
        assert answer["Cache-Control"] == "no-store"
        assert memory.verify(answer.json(), socket_id=SOCKET, channel=channel)


def test_staff_may_subscribe_to_any_order(order: Order, django_user_model: Any) -> None:
    staff = django_user_model.objects.create_user("grace", is_staff=True)
    assert subscribe(as_user(staff), f"private-orders.{order.pk}").status_code == 200


def test_another_user_and_a_guest_are_refused(order: Order, bob: Any) -> None:
    for client in (as_user(bob), as_user()):
        for channel in (f"private-orders.{order.pk}", f"presence-order-chat.{order.pk}"):
            answer = subscribe(client, channel)
            assert (answer.status_code, answer.json()) == (403, {"error": "forbidden"})


def test_ids_of_no_order_are_refused_not_errors(order: Order) -> None:
    client = as_user(order.customer)
    for order_id in ("abc", "-1", "\u00b2", "1e3", "9" * 30, str(order.pk + 1)):
        answer = subscribe(client, f"private-orders.{order_id}")
        assert answer.status_code == 403, (order_id, answer.content)


def test_what_the_guide_says_of_unchecked_ids(order: Order) -> None:
    """A query on an integer key refuses "abc"; an out-of-range number matches nothing."""
    with pytest.raises(ValueError, match="expected a number"):
        Order.objects.filter(pk="abc", customer=order.customer).exists()
    assert not Order.objects.filter(pk="9" * 30, customer=order.customer).exists()


def test_presence_info_comes_from_the_user(order: Order, bob: Any) -> None:
    channel = f"presence-order-chat.{order.pk}"
    answer = subscribe(as_user(order.customer), channel)
    assert answer.status_code == 200
    assert memory.verify(answer.json(), socket_id=SOCKET, channel=channel)
    member = json.loads(answer.json()["channel_data"])
    pk = str(order.customer.pk)
    assert member == {"user_id": pk, "user_info": {"id": pk, "name": "Ada Lovelace"}}
    # a user without a full name is shown by username
    bob.is_staff = True
    bob.save()
    member = json.loads(subscribe(as_user(bob), channel).json()["channel_data"])
    assert member["user_info"]["name"] == "bob"


def test_sign_in_data_comes_from_sign_in_data(order: Order) -> None:
    answer = as_user(order.customer).post("/broadcasting/user-auth", {"socket_id": SOCKET})
    assert answer.status_code == 200
    assert memory.verify(answer.json(), socket_id=SOCKET, channel=None)
    data = json.loads(answer.json()["user_data"])
    assert data == {"id": str(order.customer.pk), "user_info": {"name": "Ada Lovelace"}}
    refused = as_user().post("/broadcasting/user-auth", {"socket_id": SOCKET})
    assert refused.status_code == 403


@own_urls
def test_a_user_function_returning_anonymous_user_is_a_500(
    order: Order, caplog: pytest.LogCaptureFixture
) -> None:
    """What docs/django.md warns of: the rules run with AnonymousUser, and the query raises."""
    channel = f"private-orders.{order.pk}"
    assert subscribe(as_user(order.customer), channel, "/as-is").status_code == 200
    assert subscribe(as_user(), channel, "/as-is").status_code == 500
    assert_failed_with(caplog, "TypeError")
    with pytest.raises(TypeError):
        Order.objects.filter(pk=order.pk, customer=AnonymousUser()).exists()


@own_urls
def test_a_sync_user_function_returning_the_lazy_user_fails_behind_async_views(
    order: Order, caplog: pytest.LogCaptureFixture
) -> None:
    """request.user, returned unread from a sync user=, is loaded by the rule on the loop."""
    answer = subscribe(as_user(order.customer), f"private-orders.{order.pk}", "/lazy")
    assert answer.status_code == 500
    assert_failed_with(caplog, "SynchronousOnlyOperation")


def test_without_authentication_middleware_nobody_is_signed_in(order: Order, settings: Any) -> None:
    settings.MIDDLEWARE = [
        m for m in settings.MIDDLEWARE if not m.endswith(".AuthenticationMiddleware")
    ]
    answer = subscribe(as_user(order.customer), f"private-orders.{order.pk}")
    assert answer.status_code == 403


def test_refusals_say_why_at_debug(order: Order, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="broadcasting.web"):
        subscribe(as_user(), f"private-orders.{order.pk}")
        subscribe(as_user(order.customer), "private-invoices.1")
        subscribe(as_user(order.customer), f"private-orders.{order.pk + 1}")
    said = [r.getMessage() for r in caplog.records if r.name == "broadcasting.web"]
    assert any("nobody is signed in" in line for line in said), said
    assert any("no channel rule matches 'invoices.1'" in line for line in said), said
    assert any("the rule refused" in line for line in said), said
    django_said = [
        (r.levelno, r.getMessage()) for r in caplog.records if r.name == "django.request"
    ]
    assert django_said == [(logging.WARNING, "Forbidden: /broadcasting/auth")] * 3


# -- CSRF ---------------------------------------------------------------------------------------


@own_urls
def test_the_endpoints_are_csrf_exempt_unless_asked(order: Order) -> None:
    checking = as_user(order.customer, enforce_csrf_checks=True)
    channel = f"private-orders.{order.pk}"
    assert subscribe(checking, channel).status_code == 200  # exempt by default
    refused = subscribe(checking, channel, "/csrf")  # csrf=True: no token, Django's 403
    assert refused.status_code == 403 and b"CSRF" in refused.content
    assert checking.post("/csrf/broadcasting/user-auth", {"socket_id": SOCKET}).status_code == 403
    checking.get("/page")
    token = checking.cookies["csrftoken"].value
    answer = checking.post(
        "/csrf/broadcasting/auth",
        {"socket_id": SOCKET, "channel_name": channel},
        headers={"X-CSRFToken": token},
    )
    assert answer.status_code == 200
    assert memory.verify(answer.json(), socket_id=SOCKET, channel=channel)


@own_urls
def test_the_webhook_is_always_csrf_exempt() -> None:
    checking = Client(enforce_csrf_checks=True)
    for prefix in ("", "/csrf"):
        headers, body = memory.webhook_delivery([{"name": "channel_occupied", "channel": "x"}])
        answer = checking.post(
            f"{prefix}/broadcasting/webhook", body, content_type="application/json", headers=headers
        )
        assert answer.json() == {"ok": True, "events": 1}


# -- publishing from views ----------------------------------------------------------------------


def test_ship_publishes_once_committed_to_others(
    order: Order, admin_client: Client, broadcast_fake: Any, django_capture_on_commit_callbacks: Any
) -> None:
    url = f"/orders/{order.pk}/ship"
    answer = admin_client.post(url, headers={"X-Socket-ID": SOCKET})
    assert answer.status_code == 200
    broadcast_fake.assert_nothing_sent()  # the test's transaction never commits
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        admin_client.post(url, headers={"X-Socket-ID": SOCKET})
        admin_client.post(url, headers={"X-Socket-ID": "not-a-socket"})
    assert len(callbacks) == 2
    first, second = broadcast_fake.assert_sent(
        OrderShipped(order.pk), channel=PrivateChannel(f"orders.{order.pk}"), times=2
    )
    assert (first.socket_id, second.socket_id) == (SOCKET, None)  # a bad header: nobody left out
    assert first.data == {"order_id": order.pk} and first.event == "OrderShipped"
    Order.objects.get(pk=order.pk, shipped=True)


def test_only_staff_ship(order: Order, broadcast_fake: Any) -> None:
    for client in (as_user(order.customer), as_user()):
        assert client.post(f"/orders/{order.pk}/ship").status_code == 403
    broadcast_fake.assert_nothing_sent()


def test_the_async_view_publishes_with_achannel(
    order: Order, bob: Any, broadcast_fake: Any
) -> None:
    url = f"/orders/{order.pk}/received"
    assert asyncio.iscoroutinefunction(resolve(url).func)
    assert as_user().post(url).status_code == 403
    assert as_user(bob).post(url).status_code == 404
    broadcast_fake.assert_nothing_sent()
    answer = as_user(order.customer).post(url, headers={"X-Socket-ID": SOCKET})
    assert answer.json() == {"received": order.pk}
    [sent] = broadcast_fake.assert_sent(OrderReceived, channel=f"private-orders.{order.pk}")
    assert sent.socket_id == SOCKET
    Order.objects.get(pk=order.pk, received=True)


# -- webhooks -----------------------------------------------------------------------------------


def test_webhooks_reach_the_handlers(client: Client) -> None:
    key = "online:presence-order-chat.1:7"
    cache.delete(key)  # the guide's own test put it there (Django clears no cache between tests)
    headers, body = memory.webhook_delivery(
        [{"name": "member_added", "channel": "presence-order-chat.1", "user_id": "7"}]
    )
    forged = client.post(
        "/broadcasting/webhook", body + b" ", content_type="application/json", headers=headers
    )
    assert forged.status_code == 401 and cache.get(key) is None
    answer = client.post(
        "/broadcasting/webhook", body, content_type="application/json", headers=headers
    )
    assert answer.json() == {"ok": True, "events": 1} and cache.get(key) is True
    headers, body = memory.webhook_delivery(
        [{"name": "member_removed", "channel": "presence-order-chat.1", "user_id": "7"}]
    )
    client.post("/broadcasting/webhook", body, content_type="application/json", headers=headers)
    assert cache.get(key) is None


def test_allowed_hosts_applies_to_the_service(client: Client, settings: Any) -> None:
    headers, body = memory.webhook_delivery([{"name": "channel_vacated", "channel": "x"}])
    headers = {**headers, "Host": "web:8000"}

    def post() -> int:
        sent = client.post(
            "/broadcasting/webhook", body, content_type="application/json", headers=headers
        )
        return sent.status_code

    assert post() == 400
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "web"]
    assert post() == 200


# -- rules that do not fit their views ----------------------------------------------------------


@own_urls
def test_a_sync_rule_that_queries_works_behind_async_views(order: Order) -> None:
    """It runs through sync_to_async, as a sync user function does: the ORM may be used."""
    answer = subscribe(as_user(order.customer), f"private-sync.{order.pk}", "/sync-rule")
    assert answer.status_code == 200


def assert_failed_with(caplog: pytest.LogCaptureFixture, name: str) -> None:
    """The endpoint logged (at ERROR, on broadcasting.web) an exception of class ``name``."""
    raised = [
        type(r.exc_info[1]).__name__
        for r in caplog.records
        if r.name == "broadcasting.web" and r.levelno == logging.ERROR and r.exc_info
    ]
    assert raised == [name], caplog.text


@own_urls
@pytest.mark.django_db(transaction=True)
def test_an_async_rule_queries_on_another_connection_behind_sync_views(order: Order) -> None:
    """Committed data (a transactional test): the async rule sees it, from another thread."""
    answer = subscribe(as_user(order.customer), f"private-async.{order.pk}", "/async-rule")
    assert answer.status_code == 200


@own_urls
def test_an_async_rule_behind_sync_views_does_not_see_the_tests_data(order: Order) -> None:
    answer = subscribe(as_user(order.customer), f"private-async.{order.pk}", "/async-rule")
    assert answer.status_code != 200


@own_urls
def test_a_sync_webhook_handler_that_queries_works_behind_async_views() -> None:
    headers, body = mismatched.driver("memory").driver.webhook_delivery(
        [{"name": "member_added", "channel": "presence-x", "user_id": "7"}]
    )
    answer = Client().post(
        "/sync-rule/broadcasting/webhook", body, content_type="application/json", headers=headers
    )
    assert answer.status_code == 200
