"""A framework's own HTTP exception raised by the application's code is the framework's to
answer: FastAPI's ``HTTPException(401)`` from a ``user`` dependency-style function (the
idiom of ``OAuth2PasswordBearer``), Flask's ``abort(401)``, Django's ``PermissionDenied``.

Each was caught by the endpoints and answered 500 with a traceback at ERROR, for every
anonymous request: a client's request made a 500. Through each framework's own test client,
with the memory driver."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from broadcasting import Broadcast

FORM = {"socket_id": "1.2", "channel_name": "private-orders.1"}


@pytest.fixture
def broadcast() -> Iterator[Broadcast]:
    b = Broadcast({"DRIVER": "memory"})
    b.rule("orders.{order_id}")(lambda user, order_id: True)
    yield b
    b.close()


def no_error_logged(caplog: pytest.LogCaptureFixture) -> None:
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]


@pytest.mark.parametrize("route", ["/broadcasting/auth", "/broadcasting/user-auth"])
def test_fastapi_http_exception_from_user_is_fastapis_answer(
    broadcast: Broadcast, route: str, caplog: pytest.LogCaptureFixture
) -> None:
    from fastapi import FastAPI, HTTPException
    from fastapi.testclient import TestClient

    from broadcasting.web.starlette import broadcasting_router

    def user(request: Any) -> Any:
        raise HTTPException(401, "not signed in", headers={"WWW-Authenticate": "Bearer"})

    app = FastAPI()
    app.include_router(broadcasting_router(broadcast, user=user))
    with TestClient(app) as client:
        answer = client.post(route, data=FORM)
    assert answer.status_code == 401, answer.text
    assert answer.json() == {"detail": "not signed in"}
    assert answer.headers["www-authenticate"] == "Bearer"
    no_error_logged(caplog)


def test_a_starlette_http_exception_from_an_async_rule_is_starlettes_answer(
    broadcast: Broadcast, caplog: pytest.LogCaptureFixture
) -> None:
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.testclient import TestClient

    from broadcasting.web.starlette import broadcasting_routes

    async def rule(user: Any, order_id: str) -> bool:
        raise HTTPException(404, "no such order")

    broadcast.rule("invoices.{order_id}")(rule)
    app = Starlette(routes=broadcasting_routes(broadcast, user=lambda request: {"id": "1"}))
    form = {"socket_id": "1.2", "channel_name": "private-invoices.9"}
    with TestClient(app) as client:
        answer = client.post("/broadcasting/auth", data=form)
    assert answer.status_code == 404, answer.text
    no_error_logged(caplog)


def test_flask_abort_from_user_is_flasks_answer(
    broadcast: Broadcast, caplog: pytest.LogCaptureFixture
) -> None:
    from flask import Flask, abort

    from broadcasting.web.flask import broadcasting_blueprint

    def user(request: Any) -> Any:
        abort(401)

    app = Flask("framework_answers")
    app.register_blueprint(broadcasting_blueprint(broadcast, user=user))
    answer = app.test_client().post("/broadcasting/auth", data=FORM)
    assert answer.status_code == 401
    no_error_logged(caplog)


@pytest.mark.parametrize("asynchronous", [False, True])
def test_django_permission_denied_from_user_is_djangos_403(
    broadcast: Broadcast, asynchronous: bool, caplog: pytest.LogCaptureFixture
) -> None:
    import web_support

    web_support.configure_django()
    from django.core.exceptions import PermissionDenied
    from django.test import Client, override_settings
    from django.urls import include, path

    from broadcasting.web.django import broadcasting_urls

    def user(request: Any) -> Any:
        raise PermissionDenied("not yours")

    urls = broadcasting_urls(broadcast, user=user, async_views=asynchronous)
    site = web_support.DjangoSite([path("", include(urls))])
    with override_settings(ROOT_URLCONF=site, MIDDLEWARE=[]):
        answer = Client().post("/broadcasting/auth", FORM)
    assert answer.status_code == 403
    assert not [r for r in caplog.records if r.name.startswith("broadcasting")
                and r.levelno >= logging.ERROR]  # fmt: skip


def test_another_exception_from_user_is_still_a_500(
    broadcast: Broadcast, caplog: pytest.LogCaptureFixture
) -> None:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from broadcasting.web.starlette import broadcasting_router

    def user(request: Any) -> Any:
        raise LookupError("a bug")

    app = FastAPI()
    app.include_router(broadcasting_router(broadcast, user=user))
    with TestClient(app) as client:
        assert client.post("/broadcasting/auth", data=FORM).status_code == 500
    assert any(r.levelno >= logging.ERROR for r in caplog.records)
