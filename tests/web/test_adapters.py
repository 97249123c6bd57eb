"""What each adapter adds to the shared behaviour (mounting, names, defaults, CSRF); the helpers."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from web_support import (
    FRAMEWORKS,
    USERS,
    SocketIoDriver,
    WebClient,
    django_client,
    flask_app,
    make_broadcast,
    open_client,
    signed_delivery,
    user_from_headers,
    webhook_headers,
)

from broadcasting import Broadcast, RuleError
from broadcasting.web import (
    AuthEndpoints,
    Headers,
    Response,
    default_user_data,
    socket_id_from,
)

FORM = {"socket_id": "1.2", "channel_name": "private-orders.1"}
ADA = {"X-User": "ada"}
FRAMEWORK_ROOTS = {"django", "flask", "werkzeug", "starlette", "fastapi", "httpx", "uvicorn"}


@pytest.fixture
def broadcast() -> Iterator[Broadcast]:
    b = make_broadcast()
    yield b
    b.close()


# -- imports ---------------------------------------------------------------------------


def _loaded_after(statement: str) -> set[str]:
    code = (
        f"import sys\n{statement}\n"
        "import json\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout)) & FRAMEWORK_ROOTS


def test_importing_broadcasting_web_imports_no_framework() -> None:
    assert _loaded_after("import broadcasting.web") == set()


@pytest.mark.parametrize(
    ("module", "allowed"),
    [
        ("starlette", {"starlette", "anyio"}),
        ("flask", {"flask", "werkzeug"}),
        ("django", {"django"}),
    ],
)
def test_each_adapter_imports_only_its_own_framework(module: str, allowed: set[str]) -> None:
    loaded = _loaded_after(f"import broadcasting.web.{module}")
    assert module in loaded
    assert loaded <= allowed, loaded - allowed


# -- the helpers ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"X-Socket-ID": "1234.5678"}, "1234.5678"),
        ({"x-socket-id": " 1.2 "}, "1.2"),
        ({"X-SOCKET-ID": "1.2"}, "1.2"),  # a plain dict with other casing
        ({"HTTP_X_SOCKET_ID": "3.4"}, "3.4"),  # Django's request.META
        (Headers([(b"x-socket-id", b"5.6")]), "5.6"),
        ([("X-Socket-Id", "6.7")], "6.7"),  # a list of pairs, as WSGI and ASGI give
        ({"X-Socket-ID": "1234"}, None),
        ({"X-Socket-ID": "1.2.3"}, None),
        ({"X-Socket-ID": "abc.def"}, None),
        ({"X-Socket-ID": "1" * 31 + ".1"}, None),
        ({"X-Socket-ID": ""}, None),
        ({}, None),
    ],
)
def test_socket_id_from(headers: Any, expected: str | None) -> None:
    assert socket_id_from(headers) == expected


SOCKET_IO_ID = "H3Gk9vYq2bqL3KxgAAAB"


def test_socket_id_from_takes_the_shape_of_a_drivers_ids() -> None:
    """Pusher's ``digits.digits`` without a driver; with one, its ``socket_id_pattern``."""
    with make_broadcast(driver="socketio") as broadcast:
        broadcaster = broadcast.driver()
        for driver in (broadcaster, broadcaster.driver):
            assert socket_id_from({"X-Socket-ID": SOCKET_IO_ID}, driver) == SOCKET_IO_ID
            assert socket_id_from({"X-Socket-ID": "1234.5678"}, driver) is None
            assert socket_id_from({"X-Socket-ID": SOCKET_IO_ID + "x"}, driver) is None
        pusher_like = broadcast.driver("strict")
        assert socket_id_from({"X-Socket-ID": "1234.5678"}, pusher_like) == "1234.5678"
        assert socket_id_from({"X-Socket-ID": SOCKET_IO_ID}, pusher_like) is None
    assert socket_id_from({"X-Socket-ID": SOCKET_IO_ID}) is None


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_socket_io_style_driver_authorizes_its_own_connection_ids(framework: str) -> None:
    with make_broadcast(driver="socketio") as broadcast, open_client(framework, broadcast) as web:
        form = {"socket_id": SOCKET_IO_ID, "channel_name": "private-orders.1"}
        reply = web.post("/broadcasting/auth", form=form, headers=ADA)
        assert reply.status == 200, reply.text
        driver = web.memory
        assert isinstance(driver, SocketIoDriver)
        assert driver.verify(reply.json, socket_id=SOCKET_IO_ID, channel="private-orders.1")
        signed_in = web.post(
            "/broadcasting/user-auth", form={"socket_id": SOCKET_IO_ID}, headers=ADA
        )
        assert signed_in.status == 200, signed_in.text
        pusher_id = web.post("/broadcasting/auth", form={**form, "socket_id": "1.2"}, headers=ADA)
        assert pusher_id.status == 400


def test_socket_id_from_reads_each_frameworks_request_headers(broadcast: Broadcast) -> None:
    from django.test import RequestFactory
    from flask import Flask
    from starlette.requests import Request

    scope = {"type": "http", "headers": [(b"x-socket-id", b"7.8")], "method": "GET"}
    assert socket_id_from(Request(scope).headers) == "7.8"
    with Flask("t").test_request_context(headers={"X-Socket-ID": "7.8"}) as ctx:
        assert socket_id_from(ctx.request.headers) == "7.8"
    django_client(broadcast, asynchronous=False)  # configures Django once
    from web_support import configure_django

    configure_django()
    request = RequestFactory().get("/", headers={"X-Socket-ID": "7.8"})
    assert socket_id_from(request.headers) == "7.8"
    assert socket_id_from(request.META) == "7.8"


@dataclass
class _WithId:
    id: int


@dataclass
class _WithPk:
    pk: int


class _FlaskLogin:
    def get_id(self) -> str:
        return "u-9"


def test_default_user_data_derives_the_id() -> None:
    # only the id: the rest of a user never goes to the browser or the service by default
    assert default_user_data({"id": 1, "name": "A", "password_hash": "x"}) == {"id": "1"}
    assert default_user_data(_WithId(5)) == {"id": "5"}
    assert default_user_data(_WithPk(6)) == {"id": "6"}
    assert default_user_data(_FlaskLogin()) == {"id": "u-9"}
    with pytest.raises(RuleError, match="user_data="):
        default_user_data(object())
    with pytest.raises(RuleError):
        default_user_data({"name": "no id"})


def test_headers_are_case_insensitive_and_keep_the_first_value() -> None:
    headers = Headers([("X-A", "1"), ("x-a", "2"), (b"Content-Type", b"text/plain")])
    assert headers["x-A"] == "1" and headers.get("content-type") == "text/plain"
    assert "X-a" in headers and "missing" not in headers and len(headers) == 2
    assert sorted(headers) == ["Content-Type", "X-A"]


def test_the_endpoints_check_their_arguments(broadcast: Broadcast) -> None:
    with pytest.raises(TypeError, match="user="):
        AuthEndpoints(broadcast, user="nobody")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="user_data="):
        AuthEndpoints(broadcast, user=user_from_headers, user_data=42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_body"):
        AuthEndpoints(broadcast, user=user_from_headers, max_body=0)
    from broadcasting.web.starlette import broadcasting_routes

    with pytest.raises(TypeError, match="user= is required"):
        broadcasting_routes(broadcast)
    endpoints = AuthEndpoints(broadcast, user=user_from_headers)
    with pytest.raises(TypeError, match="not here"):
        broadcasting_routes(endpoints, user=user_from_headers)
    assert "secret" not in repr(endpoints).lower()


def test_a_driver_without_sign_in_or_webhooks_answers_501() -> None:
    with Broadcast({"DRIVER": "null"}) as b:
        b.rule("orders.{x}")(lambda user, x: True)
        endpoints = AuthEndpoints(b, user=lambda request: {"id": "1"})
        form = {"content-type": "application/x-www-form-urlencoded"}
        body = b"socket_id=1.2&channel_name=private-orders.1"
        auth = endpoints.handle("auth", None, method="POST", headers=form, body=body)
        user = endpoints.handle(
            "user-auth", None, method="POST", headers=form, body=b"socket_id=1.2"
        )
        hook = endpoints.handle("webhook", None, method="POST", headers={}, body=b"{}")
    for answer in (auth, user, hook):
        assert answer.status == 501
        assert "'null' driver does not support" in answer.body["error"]


def test_presence_info_over_the_services_limit_is_refused_before_signing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pytest.importorskip("broadcasting_pusher")
    options = {"app_id": "1", "key": "k", "secret": "s-not-shown", "cluster": "eu"}
    with Broadcast({"DRIVER": "pusher", "DRIVERS": {"pusher": options}}) as b:
        b.rule("chat.{room}")(lambda user, room: {"id": "1", "bio": "private " * 500})
        endpoints = AuthEndpoints(b, user=lambda request: {"id": "1"})
        answer = endpoints.handle(
            "auth",
            None,
            method="GET",
            headers={},
            query="socket_id=1.2&channel_name=presence-chat.1",
        )
        assert (answer.status, answer.body) == (
            400,
            b.driver().driver.error_body(400, "bad request"),
        )
    # the application's mistake: a warning on the server, naming the limit
    [record] = [r for r in caplog.records if r.name == "broadcasting.web"]
    assert record.levelname == "WARNING" and "1024" in record.getMessage()
    assert "private private" not in record.getMessage()


def test_the_pusher_secret_never_reaches_a_body_or_a_log_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pytest.importorskip("broadcasting_pusher")
    secret = "pusher-secret-4b1d-never-shown"
    options = {"app_id": "1", "key": "app-key", "secret": secret, "cluster": "eu"}
    caplog.set_level(logging.DEBUG)
    with Broadcast({"DRIVER": "pusher", "DRIVERS": {"pusher": options}}) as b:
        b.rule("orders.{x}")(lambda user, x: x == "1")
        b.rule("boom.{x}")(lambda user, x: 1 / 0)
        endpoints = AuthEndpoints(b, user=lambda request: {"id": "1"})
        answers = [
            endpoints.handle("auth", None, method="GET", headers={}, query=query)
            for query in (
                "socket_id=1.2&channel_name=private-orders.1",
                "socket_id=1.2&channel_name=private-orders.2",
                "socket_id=1.2&channel_name=private-boom.1",
                "socket_id=x&channel_name=private-orders.1",
            )
        ]
        unsigned = {"X-Pusher-Key": "app-key"}
        answers.append(
            endpoints.handle("webhook", None, method="POST", headers=unsigned, body=b"{}")
        )
    assert [a.status for a in answers] == [200, 403, 500, 400, 401]
    assert answers[0].body["auth"].startswith("app-key:")
    seen = [a.content.decode() for a in answers] + [r.getMessage() for r in caplog.records]
    seen += [logging.Formatter().formatException(r.exc_info) for r in caplog.records if r.exc_info]
    assert not [line for line in seen if secret in line]
    assert secret not in repr(endpoints)


def test_a_plugin_veto_is_a_403_like_any_refusal(broadcast: Broadcast) -> None:
    from broadcasting import ForbiddenError
    from broadcasting.plugin import hookimpl

    class RateLimit:
        @hookimpl
        def broadcasting_authorize(self, broadcast: Any, driver: Any, request: Any) -> None:
            if request.socket_id == "6.6":
                raise ForbiddenError("rate limit: socket 6.6 asked too often")

    broadcast.plugin_manager.register(RateLimit())
    endpoints = AuthEndpoints(broadcast, user=user_from_headers)
    request = type("R", (), {"headers": ADA})()
    for socket_id, status in (("6.6", 403), ("7.7", 200)):
        answer = endpoints.handle(
            "auth",
            request,
            method="POST",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            body=f"socket_id={socket_id}&channel_name=private-orders.1".encode(),
        )
        assert answer.status == status


#: What a client can get wrong, and the status and message each gets.
WRONG: list[tuple[dict[str, Any], int, str]] = [
    ({"form": {"socket_id": "1.2"}}, 400, "channel_name is missing"),
    ({"form": {**FORM, "channel_name": "private-orders.9"}}, 403, "forbidden"),
    ({"form": {**FORM, "pad": "x" * 9000}}, 413, "request body too large"),
    ({"form": {**FORM, "channel_name": "private-boom.1"}}, 500, "internal server error"),
]


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_every_error_is_in_the_shape_of_the_drivers_error_body(framework: str) -> None:
    """The Ably driver answers errors in Ably's shape, which its SDKs parse; any driver may."""

    def shaped(status: int, message: str) -> dict[str, Any]:
        return {"error": {"message": message, "statusCode": status, "code": status * 100}}

    with make_broadcast(driver="shaped") as broadcast, open_client(framework, broadcast) as web:
        assert web.error(403, "forbidden") == shaped(403, "forbidden")
        for sent, status, message in WRONG:
            reply = web.post("/broadcasting/auth", headers=ADA, **sent)
            assert (reply.status, reply.json) == (status, shaped(status, message))
        hook = web.post("/broadcasting/webhook", content=b"{}", headers=webhook_headers(b"[]"))
        assert (hook.status, hook.json) == (401, shaped(401, "unauthorized"))
        if framework.startswith(("handler", "django")):  # the others route methods themselves
            other = web.request("PUT", "/broadcasting/auth", headers=ADA)
            assert (other.status, other.json) == (405, shaped(405, "method not allowed"))
            assert other.headers["allow"] == "GET, POST"


@pytest.mark.parametrize("framework", ["handler-async", "starlette", "django", "flask"])
def test_the_ably_drivers_errors_are_its_error_body(framework: str) -> None:
    """What Ably's SDKs parse from an ``authUrl`` is the Ably driver's to say."""
    with make_broadcast(driver="ably") as broadcast, open_client(framework, broadcast) as web:
        refused = web.post(
            "/broadcasting/auth", form={"channel_name": "private:orders.9"}, headers=ADA
        )
        assert (refused.status, refused.json) == (403, web.error(403, "forbidden"))
        public = web.post("/broadcasting/auth", form={"channel_name": "orders.1"}, headers=ADA)
        assert public.status == 400 and public.json == web.error(400, public.message)


def test_an_adapters_own_refusal_is_in_the_drivers_shape_too() -> None:
    from flask import request

    with make_broadcast(driver="shaped") as broadcast:
        app = flask_app(broadcast)

        @app.before_request
        def peek() -> None:
            request.form.get("anything")  # consumes the stream: the adapter reads the form

        form = {**FORM, "f": (io.BytesIO(b"data"), "a.txt")}
        reply = app.test_client().post("/broadcasting/auth", data=form, headers=ADA)
        message = "the multipart body may hold only named text fields"
        assert reply.status_code == 400
        assert reply.get_json() == {"error": {"message": message, "statusCode": 400, "code": 40000}}


def test_a_driver_that_cannot_connect_is_a_500_in_the_default_shape(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with Broadcast({"DRIVER": "no-such-driver"}) as broadcast:
        endpoints = AuthEndpoints(broadcast, user=user_from_headers)
        answer = endpoints.handle("auth", None, method="GET", headers={}, query="socket_id=1.2")
        assert (answer.status, answer.body) == (500, {"error": "internal server error"})
        assert endpoints.error(400, "gone").body == {"error": "gone"}
    [record] = [r for r in caplog.records if r.name == "broadcasting.web"]
    assert record.levelname == "ERROR" and record.exc_info is not None


def test_handle_and_ahandle_refuse_an_unknown_route(broadcast: Broadcast) -> None:
    import asyncio

    endpoints = AuthEndpoints(broadcast, user=user_from_headers)
    with pytest.raises(ValueError, match="unknown route"):
        endpoints.handle("nope", None, method="POST", headers={})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown route"):
        asyncio.run(endpoints.ahandle("nope", None, method="POST", headers={}))  # type: ignore[arg-type]


def test_ahandle_runs_a_sync_user_function_through_offload(broadcast: Broadcast) -> None:
    """Without ``offload`` a sync user function is called on the loop; with one, through it,
    and so is the sync channel rule the authorization hook calls."""
    import asyncio

    offloaded: list[str] = []

    async def offload(function: Any, *args: Any) -> Any:
        offloaded.append(function.__name__)
        return await asyncio.to_thread(function, *args)

    def user(request: Any) -> Any:
        return USERS["ada"]

    def user_data(request: Any, user: Any) -> dict[str, str]:
        return {"id": user["id"]}

    endpoints = AuthEndpoints(broadcast, user=user, user_data=user_data)
    form = {"content-type": "application/x-www-form-urlencoded"}

    async def both() -> list[int]:
        answers = []
        for route, body in (
            ("auth", b"socket_id=1.2&channel_name=private-orders.1"),
            ("user-auth", b"socket_id=1.2"),
        ):
            for given in (None, offload):
                answer = await endpoints.ahandle(
                    route,
                    None,
                    method="POST",
                    headers=form,
                    body=body,
                    offload=given,  # type: ignore[arg-type]
                )
                answers.append(answer.status)
        return answers

    assert asyncio.run(both()) == [200] * 4
    assert offloaded == ["user", "order_owner", "user", "user_data"]


def test_the_response_is_compact_json() -> None:
    answer = Response(200, {"auth": "k:é"})
    assert answer.content == '{"auth":"k:é"}'.encode()
    assert answer.ok and not Response(403, {}).ok


# -- Starlette and FastAPI ---------------------------------------------------------------------


def test_starlette_paths_can_be_moved_or_left_out(broadcast: Broadcast) -> None:
    from starlette.applications import Starlette
    from starlette.testclient import TestClient

    from broadcasting.web.starlette import broadcasting_routes

    routes = broadcasting_routes(
        broadcast, user=user_from_headers, auth_path="/pusher/auth", webhook_path=None
    )
    app = Starlette(routes=routes)
    assert [r.name for r in routes] == ["broadcasting_auth", "broadcasting_user_auth"]
    assert app.url_path_for("broadcasting_auth") == "/pusher/auth"
    with TestClient(app) as client:
        assert client.post("/pusher/auth", data=FORM, headers=ADA).status_code == 200
        assert client.post("/broadcasting/auth", data=FORM, headers=ADA).status_code == 404
        assert client.post("/broadcasting/webhook", content=b"{}").status_code == 404


def test_starlette_runs_a_sync_user_function_off_the_event_loop(broadcast: Broadcast) -> None:
    """A blocking user function (a database query) must not stall the server's loop."""
    import threading

    from starlette.applications import Starlette
    from starlette.testclient import TestClient

    from broadcasting.web.starlette import broadcasting_routes

    threads: list[threading.Thread] = []

    def blocking_user(request: Any) -> Any:
        threads.append(threading.current_thread())
        return user_from_headers(request)

    loop_threads: list[threading.Thread] = []

    async def async_user(request: Any) -> Any:
        loop_threads.append(threading.current_thread())
        return user_from_headers(request)

    ready = AuthEndpoints(broadcast, user=blocking_user)  # a ready one is served the same way
    for routes in (
        broadcasting_routes(broadcast, user=blocking_user),
        broadcasting_routes(broadcast, user=async_user),
        broadcasting_routes(ready),
    ):
        with TestClient(Starlette(routes=routes)) as client:
            assert client.post("/broadcasting/auth", data=FORM, headers=ADA).status_code == 200
            assert client.post("/broadcasting/user-auth", data=FORM, headers=ADA).status_code == 200
    # the loop runs in one thread; the sync function ran in others (the pool)
    assert len(set(loop_threads)) == 1
    assert loop_threads[0] not in threads and len(threads) == 4


def test_fastapi_routes_stay_out_of_the_openapi_schema(broadcast: Broadcast) -> None:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from broadcasting.web.starlette import broadcasting_router

    app = FastAPI()

    @app.get("/orders")
    def orders() -> list[int]:
        return [1]

    app.include_router(broadcasting_router(broadcast, user=user_from_headers), prefix="/api")
    with TestClient(app) as client:
        assert list(client.get("/openapi.json").json()["paths"]) == ["/orders"]
        assert client.post("/api/broadcasting/auth", data=FORM, headers=ADA).status_code == 200


def test_starlette_refuses_an_oversize_chunked_body(broadcast: Broadcast) -> None:
    from starlette.applications import Starlette
    from starlette.testclient import TestClient

    from broadcasting.web.starlette import broadcasting_routes

    app = Starlette(routes=broadcasting_routes(broadcast, user=user_from_headers))

    def chunks() -> Iterator[bytes]:  # chunked: no Content-Length to refuse it by
        yield b"socket_id=1.2&channel_name=private-orders.1&pad="
        yield from [b"x" * 1024] * 64

    with TestClient(app) as client:
        reply = client.post(
            "/broadcasting/auth",
            content=chunks(),
            headers={**ADA, "Content-Type": "application/x-www-form-urlencoded"},
        )
    assert reply.status_code == 413


def test_a_starlette_view_publishes_to_others_with_the_socket_id_header(
    broadcast: Broadcast,
) -> None:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient

    async def ship(request: Request) -> JSONResponse:
        await broadcast.achannel(
            "orders", {"id": 1}, "shipped", socket_id=socket_id_from(request.headers)
        )
        return JSONResponse({"ok": True})

    memory = broadcast.driver("strict").driver
    mine: list[Any] = []
    others: list[Any] = []
    memory.subscribe(mine.append, "orders", socket_id="1.1")
    memory.subscribe(others.append, "orders", socket_id="2.2")
    with TestClient(Starlette(routes=[Route("/ship", ship, methods=["POST"])])) as client:
        assert client.post("/ship", headers={"X-Socket-ID": "1.1"}).status_code == 200
        assert client.post("/ship", headers={"X-Socket-ID": "not-a-socket"}).status_code == 200
    assert [m.socket_id for m in others] == ["1.1", None]
    assert [m.socket_id for m in mine] == [None]  # its own publish skipped, the other arrives


# -- Django -------------------------------------------------------------------------------------


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_django_by_default_authorizes_request_user_and_signs_in_its_pk(
    broadcast: Broadcast, asynchronous: bool
) -> None:
    @broadcast.rule("profile.{pk}")
    def own_profile(user: Any, pk: str) -> bool:
        return str(user.pk) == pk  # a Django user, from request.user

    clients = django_client(broadcast, asynchronous=asynchronous, user=None)
    web: WebClient = next(clients)
    form = {"socket_id": "1.2", "channel_name": "private-profile.1"}
    try:
        assert web.post("/broadcasting/auth", form=form, headers=ADA).status == 200
        assert web.post("/broadcasting/auth", form=form, headers={"X-User": "bob"}).status == 403
        anonymous = web.post("/broadcasting/auth", form=form)
        assert (anonymous.status, anonymous.json) == (403, web.error(403, "forbidden"))
        signed_in = web.post("/broadcasting/user-auth", form={"socket_id": "1.2"}, headers=ADA)
        assert json.loads(signed_in.json["user_data"]) == {"id": USERS["ada"]["id"]}
    finally:
        clients.close()


@pytest.mark.parametrize("ready", [False, True], ids=["built", "ready-endpoints"])
def test_django_async_views_run_sync_user_functions_off_the_loop(
    broadcast: Broadcast, ready: bool
) -> None:
    """Django refuses ORM calls on the event loop: sync_to_async runs them in a thread."""
    import asyncio

    on_a_loop: list[bool] = []

    def running_loop() -> bool:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return False
        return True

    def user(request: Any) -> Any:
        on_a_loop.append(running_loop())
        return user_from_headers(request)

    def user_data(request: Any, user: Any) -> dict[str, str]:
        on_a_loop.append(running_loop())
        return {"id": user["id"]}

    options: dict[str, Any] = {"user": user, "user_data": user_data}
    target: Any = broadcast
    if ready:
        target, options = AuthEndpoints(broadcast, **options), {"user": None}
    clients = django_client(target, asynchronous=True, **options)
    web = next(clients)
    try:
        assert web.post("/broadcasting/auth", form=FORM, headers=ADA).status == 200
        assert web.post("/broadcasting/user-auth", form=FORM, headers=ADA).status == 200
    finally:
        clients.close()
    assert on_a_loop == [False, False, False]


def test_django_urls_are_named_and_reversible(broadcast: Broadcast) -> None:
    clients = django_client(broadcast, asynchronous=False)
    next(clients)
    try:
        from django.urls import reverse

        assert reverse("broadcasting_auth") == "/broadcasting/auth"
        assert reverse("broadcasting_user_auth") == "/broadcasting/user-auth"
        assert reverse("broadcasting_webhook") == "/broadcasting/webhook"
    finally:
        clients.close()


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_django_csrf_is_off_by_default_and_can_be_kept(
    broadcast: Broadcast, asynchronous: bool
) -> None:
    from web_support import webhook_headers

    exempt = django_client(broadcast, asynchronous=asynchronous, enforce_csrf=True)
    try:
        web = next(exempt)
        assert web.post("/broadcasting/auth", form=FORM, headers=ADA).status == 200
    finally:
        exempt.close()

    kept = django_client(broadcast, asynchronous=asynchronous, enforce_csrf=True, csrf=True)
    try:
        web = next(kept)
        refused = web.post("/broadcasting/auth", form=FORM, headers=ADA)
        assert refused.status == 403 and "CSRF" in refused.text  # Django's own refusal
        from django.middleware.csrf import _get_new_csrf_string

        token = _get_new_csrf_string()
        headers = {**ADA, "X-CSRFToken": token, "Cookie": f"csrftoken={token}"}
        assert web.post("/broadcasting/auth", form=FORM, headers=headers).status == 200
        # the webhook's signature is its proof: never behind CSRF
        body = signed_delivery([{"name": "channel_occupied", "channel": "c"}])
        assert (
            web.post("/broadcasting/webhook", content=body, headers=webhook_headers(body)).status
            == 200
        )
    finally:
        kept.close()


# -- Flask -------------------------------------------------------------------------------------


def test_flask_blueprint_names_and_prefix(broadcast: Broadcast) -> None:
    from flask import url_for

    app = flask_app(broadcast, name="rt", url_prefix="/api", user_auth_path=None)
    with app.test_request_context():
        assert url_for("rt.auth") == "/api/broadcasting/auth"
        assert url_for("rt.webhook") == "/api/broadcasting/webhook"
    client = app.test_client()
    assert client.post("/api/broadcasting/auth", data=FORM, headers=ADA).status_code == 200
    assert client.post("/api/broadcasting/user-auth", data={"socket_id": "1.2"}).status_code == 404


def test_flask_refuses_an_oversize_chunked_body(broadcast: Broadcast) -> None:
    app = flask_app(broadcast)
    body = b"socket_id=1.2&channel_name=private-orders.1&pad=" + b"x" * 65536
    reply = app.test_client().post(
        "/broadcasting/auth",
        input_stream=io.BytesIO(body),
        # what a server sets for a chunked request: no CONTENT_LENGTH to refuse it by
        environ_overrides={"wsgi.input_terminated": True},
        headers={**ADA, "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert reply.status_code == 413


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_django_with_csrf_kept_reads_a_multipart_body_the_middleware_already_parsed(
    broadcast: Broadcast, asynchronous: bool
) -> None:
    """CsrfViewMiddleware reads request.POST first; a multipart stream is then gone."""
    from django.middleware.csrf import _get_new_csrf_string

    token = _get_new_csrf_string()
    clients = django_client(broadcast, asynchronous=asynchronous, enforce_csrf=True, csrf=True)
    web = next(clients)
    headers = {**ADA, "X-CSRFToken": token, "Cookie": f"csrftoken={token}"}

    def part(name: str, value: str, extra: str = "") -> str:
        return f'--XyZ\r\nContent-Disposition: form-data; name="{name}"{extra}\r\n\r\n{value}\r\n'

    fields = part("socket_id", "1.2") + part("channel_name", "private-orders.1")
    try:
        reply = web.post(
            "/broadcasting/auth",
            content=(fields + "--XyZ--\r\n").encode(),
            content_type="multipart/form-data; boundary=XyZ",
            headers=headers,
        )
        assert reply.status == 200, reply.text
        assert web.memory.verify(reply.json, socket_id="1.2", channel="private-orders.1")
        with_file = fields + part("f", "data", '; filename="a.txt"') + "--XyZ--\r\n"
        refused = web.post(
            "/broadcasting/auth",
            content=with_file.encode(),
            content_type="multipart/form-data; boundary=XyZ",
            headers=headers,
        )
        assert refused.status == 400 and "text fields" in refused.message
    finally:
        clients.close()


def test_flask_reads_a_form_a_before_request_hook_already_parsed(broadcast: Broadcast) -> None:
    from flask import request

    app = flask_app(broadcast)

    @app.before_request
    def peek() -> None:
        request.form.get("anything")  # consumes the stream, as extensions do

    client = app.test_client()
    reply = client.post("/broadcasting/auth", data=FORM, headers=ADA)
    assert reply.status_code == 200, reply.text
    memory = broadcast.driver("strict").driver
    assert memory.verify(reply.get_json(), socket_id="1.2", channel="private-orders.1")  # type: ignore[attr-defined]
    with_file = {**FORM, "f": (io.BytesIO(b"data"), "a.txt")}
    refused = client.post("/broadcasting/auth", data=with_file, headers=ADA)
    assert refused.status_code == 400


@pytest.mark.parametrize(
    "text",
    [
        "socket_id=1.2&channel_name=private-orders.1",
        "a=&b",
        "&&a=1&",
        "a==b",
        "x=1&x=2",
        "",
        "a",
        "name=A%20B&c=d+e",  # quoted: the standard parser
        "a=1;b=2",
    ],
)
def test_the_form_fast_path_reads_what_parse_qsl_reads(text: str) -> None:
    from urllib.parse import parse_qsl

    from broadcasting.web import _form

    assert _form(text, "the body") == parse_qsl(text, keep_blank_values=True)
