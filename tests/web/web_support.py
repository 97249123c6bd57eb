"""What the web tests share: the Broadcast under test, its rules, a signing test driver,
and one small client interface over each framework's OWN test client.

Every framework is driven through its real request machinery: Starlette's and
FastAPI's ``TestClient`` (httpx), Django's test ``Client`` (settings configured
here), Flask's ``test_client``. The "handler" clients call ``AuthEndpoints``
directly, with no framework, which is what a user of another framework does.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlencode

from broadcasting import BadRequestError, Broadcast, UnauthorizedError, WebhookEvent
from broadcasting.drivers.memory import BroadcastMemoryDriver
from broadcasting.plugin import Limits, hookimpl
from broadcasting.web import AuthEndpoints, Headers

WEBHOOK_KEY = "hook-key"
WEBHOOK_SECRET = b"hook-secret-not-shown"
SECRET_DETAIL = "the-rule-s-private-detail-7f3a"


class StrictMemoryDriver(BroadcastMemoryDriver):
    """The memory driver with Pusher's channel-name limits and a webhook verifier of its own.

    A test double for what the Pusher driver will do (its signing and
    webhook verification are being written elsewhere): HMAC-SHA256 hex of the
    raw body under ``X-Test-Key`` / ``X-Test-Signature``.
    """

    name = "strict"
    limits = Limits(
        max_channel_name_length=164,
        channel_pattern=re.compile(r"[-a-zA-Z0-9_=@,.;]+"),
        channel_rule="at most 164 of A-Z a-z 0-9 _ - = @ , . ;",
    )

    def verify_webhook(self, headers: Mapping[str, str], body: bytes) -> list[WebhookEvent]:
        if headers.get("X-Test-Key") != WEBHOOK_KEY:
            raise UnauthorizedError("unknown webhook key")
        expected = hmac.new(WEBHOOK_SECRET, body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(headers.get("X-Test-Signature", ""), expected):
            raise UnauthorizedError("bad webhook signature")
        try:
            delivery = json.loads(body)
            events = list(delivery["events"])
            time_ms = int(delivery["time_ms"])
            if not all(isinstance(e, dict) for e in events):
                raise TypeError("an event is not an object")
        except (ValueError, KeyError, TypeError, RecursionError, OverflowError):
            raise BadRequestError("malformed webhook body") from None
        return [
            WebhookEvent(
                name=str(e.get("name")),
                channel=e.get("channel"),
                time_ms=time_ms,
                id=f"{time_ms}:{i}",
                user_id=e.get("user_id"),
                driver=self.name,
                raw=e,
            )
            for i, e in enumerate(events)
        ]


class ShapedDriver(StrictMemoryDriver):
    """Answers errors in a shape of its own, as the Ably driver answers in Ably's."""

    name = "shaped"

    def error_body(self, status: int, message: str) -> dict[str, Any]:
        return {"error": {"message": message, "statusCode": status, "code": status * 100}}


class SocketIoDriver(StrictMemoryDriver):
    """A service whose connection ids are socket.io's (20 URL-safe characters), not Pusher's."""

    name = "socketio"
    socket_id_pattern = re.compile(r"[A-Za-z0-9_-]{20}")


TEST_DRIVERS: dict[str, type[StrictMemoryDriver]] = {
    cls.name: cls for cls in (StrictMemoryDriver, ShapedDriver, SocketIoDriver)
}


class Provider:
    """Connects the test drivers for a Broadcast built with ``plugins=[Provider()]``."""

    @hookimpl
    def broadcasting_connect(self, name: str, options: Mapping[str, Any]) -> Any:
        cls = TEST_DRIVERS.get(name)
        return cls() if cls is not None else None


@dataclass
class Recorder:
    """A plugin that records what every authorization carried (it never decides)."""

    requests: list[Any] = field(default_factory=list)

    @hookimpl
    def broadcasting_authorize(self, broadcast: Any, driver: Any, request: Any) -> None:
        self.requests.append(request)


#: Options of the real drivers the security tests also serve (nothing here talks to a network:
#: signing, tokens and webhook verification are local).
PUSHER_KEY, PUSHER_SECRET = "web-test-key", "web-test-secret-2b7"
ABLY_KEY = "webapp.webkey:W3bTestS3cret_abcdefghij"
DRIVER_OPTIONS: dict[str, dict[str, Any]] = {
    "pusher": {
        "app_id": "4242",
        "key": PUSHER_KEY,
        "secret": PUSHER_SECRET,
        "host": "127.0.0.1",
        "port": 9,
    },
    "ably": {"key": ABLY_KEY},
    "memory": {},
}


def make_broadcast(
    recorder: Recorder | None = None, *, driver: str = "strict", raising: bool = True
) -> Broadcast:
    """The Broadcast under test: the strict memory driver (or ``driver``) and a handful of rules.

    ``raising=False`` leaves out the rules that raise (the application's own faults).
    """
    plugins: list[object] = [Provider()]
    if recorder is not None:
        plugins.append(recorder)
    drivers = {driver: DRIVER_OPTIONS[driver]} if driver in DRIVER_OPTIONS else {}
    broadcast = Broadcast({"DRIVER": driver, "DRIVERS": drivers}, plugins=plugins)

    @broadcast.rule("orders.{order_id}")
    def order_owner(user: Any, order_id: str) -> bool:
        return order_id in user.get("orders", ())

    @broadcast.rule("chat.{room}")
    async def chat_member(user: Any, room: str) -> dict[str, Any]:
        return {"id": user["id"], "name": user["name"], "room": room}

    if not raising:
        return broadcast

    @broadcast.rule("boom.{x}")
    def boom(user: Any, x: str) -> bool:
        raise RuntimeError(SECRET_DETAIL)

    @broadcast.rule("noid.{x}")
    def noid(user: Any, x: str) -> dict[str, Any]:
        return {"name": SECRET_DETAIL}

    return broadcast


def sign_webhook(broadcast: Broadcast, body: bytes) -> dict[str, str]:
    """The headers with which the service of ``broadcast``'s default driver signs ``body``."""
    import base64

    name = broadcast.driver().name
    if name == "strict":
        return webhook_headers(body)
    if name == "pusher":
        signature = hmac.new(PUSHER_SECRET.encode(), body, hashlib.sha256).hexdigest()
        return {"X-Pusher-Key": PUSHER_KEY, "X-Pusher-Signature": signature}
    if name == "ably":
        key_name, secret = ABLY_KEY.split(":", 1)
        mac = hmac.new(secret.encode(), body, hashlib.sha256).digest()
        return {"X-Ably-Key": key_name, "X-Ably-Signature": base64.b64encode(mac).decode()}
    if name == "memory":
        driver: Any = broadcast.driver().driver
        return {
            "X-Broadcasting-Key": name,
            "X-Broadcasting-Signature": driver._hmac(body),
        }
    raise ValueError(f"no webhook signing for {name!r}")


USERS = {
    "ada": {"id": "1", "name": "Ada", "orders": ["1", "2"]},
    "bob": {"id": "2", "name": "Bob", "orders": []},
}


def user_from_headers(request: Any) -> dict[str, Any] | None:
    """The test app's "session": the ``X-User`` header names the signed-in user."""
    name = request.headers.get("X-User")
    return USERS.get(name) if name else None


async def auser_from_headers(request: Any) -> dict[str, Any] | None:
    """Async twin of :func:`user_from_headers`."""
    return user_from_headers(request)


def signed_delivery(events: list[dict[str, Any]], *, time_ms: int = 1_700_000_000_000) -> bytes:
    return json.dumps({"time_ms": time_ms, "events": events}).encode()


def webhook_headers(body: bytes, *, key: str = WEBHOOK_KEY) -> dict[str, str]:
    signature = hmac.new(WEBHOOK_SECRET, body, hashlib.sha256).hexdigest()
    return {"X-Test-Key": key, "X-Test-Signature": signature, "Content-Type": "application/json"}


# -- one interface over every framework's test client --------------------------------------


@dataclass
class Reply:
    status: int
    text: str
    headers: Mapping[str, str]

    def __post_init__(self) -> None:
        self.headers = {k.lower(): v for k, v in self.headers.items()}

    @property
    def json(self) -> Any:
        return json.loads(self.text)

    @property
    def message(self) -> str:
        """An error answer's message, in the default shape or in Ably's."""
        error = self.json["error"]
        return error if isinstance(error, str) else error["message"]


Send = Callable[[str, str, bytes, "dict[str, str]", str], Reply]


@dataclass
class WebClient:
    """``request(method, path, form=|json=|content=, headers=, query=)`` on one framework."""

    name: str
    send: Send
    broadcast: Broadcast

    def request(
        self,
        method: str,
        path: str,
        *,
        form: Mapping[str, str] | list[tuple[str, str]] | None = None,
        json_body: Any = None,
        content: bytes | None = None,
        content_type: str | None = None,
        headers: Mapping[str, str] | None = None,
        query: Mapping[str, str] | None = None,
    ) -> Reply:
        sent = dict(headers or {})
        body = b""
        if form is not None:
            body = urlencode(form).encode()
            sent.setdefault("Content-Type", "application/x-www-form-urlencoded")
        elif json_body is not None:
            body = json.dumps(json_body).encode()
            sent.setdefault("Content-Type", "application/json")
        elif content is not None:
            body = content
        if content_type is not None:
            sent["Content-Type"] = content_type
        return self.send(method, path, body, sent, urlencode(query or {}))

    def post(self, path: str, **kwargs: Any) -> Reply:
        return self.request("POST", path, **kwargs)

    @property
    def memory(self) -> StrictMemoryDriver:
        driver = self.broadcast.driver().driver
        assert isinstance(driver, StrictMemoryDriver)
        return driver

    def error(self, status: int, message: str) -> dict[str, Any]:
        """The error body the endpoints answer with: the signing driver's ``error_body``."""
        return self.broadcast.driver().driver.error_body(status, message)


def handler_client(broadcast: Broadcast, *, asynchronous: bool) -> WebClient:
    """No framework: ``AuthEndpoints.handle`` / ``ahandle`` called as an adapter would."""
    import asyncio

    user = auser_from_headers  # the sync path runs an async user function too
    endpoints = AuthEndpoints(broadcast, user=user)
    routes = {"/broadcasting/auth": "auth", "/broadcasting/user-auth": "user-auth"}
    routes["/broadcasting/webhook"] = "webhook"

    def send(method: str, path: str, body: bytes, headers: dict[str, str], query: str) -> Reply:
        request = SimpleNamespace(headers=Headers(headers))
        kwargs: dict[str, Any] = {"method": method, "headers": headers, "body": body}
        if not path.endswith("webhook"):
            kwargs["query"] = query
        route: Any = routes[path]
        if asynchronous:
            answer = asyncio.run(endpoints.ahandle(route, request, **kwargs))
        else:
            answer = endpoints.handle(route, request, **kwargs)
        return Reply(answer.status, answer.content.decode(), dict(answer.headers))

    return WebClient("handler-async" if asynchronous else "handler", send, broadcast)


def starlette_client(broadcast: Broadcast, *, fastapi: bool) -> tuple[WebClient, Any]:
    from starlette.testclient import TestClient

    from broadcasting.web.starlette import broadcasting_router, broadcasting_routes

    if fastapi:
        from fastapi import FastAPI

        app: Any = FastAPI()
        app.include_router(broadcasting_router(broadcast, user=user_from_headers))
    else:
        from starlette.applications import Starlette

        app = Starlette(routes=broadcasting_routes(broadcast, user=auser_from_headers))
    client = TestClient(app)

    def send(method: str, path: str, body: bytes, headers: dict[str, str], query: str) -> Reply:
        url = f"{path}?{query}" if query else path
        raw = {name: value.encode("latin-1") for name, value in headers.items()}  # as on the wire
        response = client.request(method, url, content=body, headers=raw)
        return Reply(response.status_code, response.text, dict(response.headers))

    return WebClient("fastapi" if fastapi else "starlette", send, broadcast), client


def flask_app(broadcast: Broadcast, **options: Any) -> Any:
    from flask import Flask

    from broadcasting.web.flask import broadcasting_blueprint

    app = Flask("web_tests")
    options.setdefault("user", user_from_headers)
    app.register_blueprint(broadcasting_blueprint(broadcast, **options))
    return app


def flask_client(broadcast: Broadcast) -> WebClient:
    client = flask_app(broadcast).test_client()

    def send(method: str, path: str, body: bytes, headers: dict[str, str], query: str) -> Reply:
        response = client.open(
            path, method=method, data=body, headers=headers, query_string=query or None
        )
        return Reply(response.status_code, response.get_data(as_text=True), dict(response.headers))

    return WebClient("flask", send, broadcast)


# -- Django: settings configured once, URLs per test -------------------------------------------


DJANGO_MIDDLEWARE = [
    "django.middleware.csrf.CsrfViewMiddleware",
    "web_support.HeaderUserMiddleware",
]
DJANGO_HOSTS = ["testserver", "127.0.0.1", "localhost"]


def configure_django() -> None:
    """Minimal settings: no database, a middleware that signs users in from ``X-User``."""
    import django
    from django.conf import settings

    if not settings.configured:
        settings.configure(
            DEBUG=False,
            SECRET_KEY="web-tests-only",
            ALLOWED_HOSTS=DJANGO_HOSTS,
            ROOT_URLCONF="web_support",
            INSTALLED_APPS=[],
            MIDDLEWARE=DJANGO_MIDDLEWARE,
            USE_TZ=True,
            LOGGING_CONFIG=None,
        )
        django.setup()


urlpatterns: list[Any] = []  # replaced per test through override_settings(ROOT_URLCONF=...)


@dataclass
class DjangoUser:
    """What ``request.user`` looks like: ``pk``, ``is_authenticated``."""

    pk: int
    username: str
    is_authenticated: bool = True


class _Anonymous:
    pk = None
    is_authenticated = False


class HeaderUserMiddleware:
    """Sets ``request.user`` and ``request.auser`` the way AuthenticationMiddleware does."""

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response

    def __call__(self, request: Any) -> Any:
        name = request.headers.get("X-User")
        found = USERS.get(name) if name else None
        user: Any = DjangoUser(int(found["id"]), name) if found else _Anonymous()
        request.user = user

        async def auser() -> Any:
            return user

        request.auser = auser
        return self.get_response(request)


@dataclass(eq=False)
class DjangoSite:
    """The patterns a test serves, as an object usable as ROOT_URLCONF."""

    urlpatterns: list[Any]


def django_client(
    broadcast: Broadcast, *, asynchronous: bool, enforce_csrf: bool = False, **options: Any
) -> Iterator[WebClient]:
    """A Django test client serving ``broadcasting_urls(broadcast, **options)``."""
    configure_django()
    from django.test import Client, override_settings
    from django.urls import include, path

    from broadcasting.web.django import broadcasting_urls

    if "user" not in options:
        options["user"] = user_from_headers
    site = DjangoSite(
        [path("", include(broadcasting_urls(broadcast, async_views=asynchronous, **options)))]
    )
    client = Client(enforce_csrf_checks=enforce_csrf)

    def send(method: str, path_: str, body: bytes, headers: dict[str, str], query: str) -> Reply:
        content_type = headers.pop("Content-Type", "application/octet-stream")
        url = f"{path_}?{query}" if query else path_
        response = client.generic(
            method, url, data=body, content_type=content_type, headers=headers
        )
        return Reply(
            response.status_code, response.content.decode(), dict(response.headers.items())
        )

    # every setting the tests rely on, whoever configured Django first in this process
    with override_settings(
        ROOT_URLCONF=site, MIDDLEWARE=DJANGO_MIDDLEWARE, ALLOWED_HOSTS=DJANGO_HOSTS
    ):
        yield WebClient("django-async" if asynchronous else "django", send, broadcast)


FRAMEWORKS = ["handler", "handler-async", "starlette", "fastapi", "django", "django-async", "flask"]


@contextmanager
def open_client(name: str, broadcast: Broadcast) -> Iterator[WebClient]:
    """The endpoints of ``broadcast`` mounted on framework ``name`` (one of FRAMEWORKS)."""
    if name in ("handler", "handler-async"):
        yield handler_client(broadcast, asynchronous=name == "handler-async")
    elif name in ("starlette", "fastapi"):
        client, test_client = starlette_client(broadcast, fastapi=name == "fastapi")
        with test_client:
            yield client
    elif name in ("django", "django-async"):
        clients = django_client(broadcast, asynchronous=name == "django-async")
        try:
            yield next(clients)
        finally:
            clients.close()
    elif name == "flask":
        yield flask_client(broadcast)
    else:
        raise ValueError(f"unknown framework {name!r}")


class ServerThread:
    """A WSGI app served by wsgiref in a thread (a real server on a real port)."""

    def __init__(self, app: Any) -> None:
        from wsgiref.simple_server import WSGIRequestHandler, make_server

        class Quiet(WSGIRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = make_server("127.0.0.1", 0, app, handler_class=Quiet)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> ServerThread:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


#: The start of a settings module for :func:`django_check_run`: the app installed, no
#: database; a test adds its ``BROADCASTING``.
CHECK_SETTINGS = """\
SECRET_KEY = "django-check-tests-only"
DEBUG = False
ALLOWED_HOSTS = ["testserver"]
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
INSTALLED_APPS = ["broadcasting.contrib.django"]
DATABASES = {}
"""


def django_check_run(
    folder: Path, settings: str, *argv: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``python -m django check *argv`` in a process of its own, with the settings module
    ``settings`` (a module in ``folder``, which is put on its path), none of this test run's
    own Django, broadcasting or pytest environment: what ``manage.py check`` shows a user."""
    dropped = ("PYTEST_", "DJANGO_", "BROADCAST", "COV_", "COVERAGE_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(dropped)}
    path = os.pathsep.join(filter(None, [str(folder), os.environ.get("PYTHONPATH")]))
    env.update(DJANGO_SETTINGS_MODULE=settings, PYTHONPATH=path, PYTHONDONTWRITEBYTECODE="1")
    return subprocess.run(
        [sys.executable, "-m", "django", "check", *argv],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
