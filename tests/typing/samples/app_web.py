"""User code: the endpoints in FastAPI, Starlette and Flask, the Flask extension, and
AuthEndpoints for another framework, as docs/web.md, docs/flask.md and docs/publishing.md
show them.

Checked by mypy --strict (tests/typing/test_public_types.py), never run.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import flask
from fastapi import APIRouter, FastAPI, Header, Request, params
from markupsafe import Markup
from starlette.applications import Starlette
from starlette.routing import Route as StarletteRoute
from typing_extensions import assert_type

from broadcasting import Broadcast, PrivateChannel, Receipt, WebhookEvent
from broadcasting.contrib.flask import Broadcasting, broadcasting_client_config
from broadcasting.contrib.flask import broadcast as current_broadcast
from broadcasting.web import (
    AuthEndpoints,
    Response,
    client_config,
    client_config_html,
    socket_id_from,
)
from broadcasting.web.flask import broadcasting_blueprint
from broadcasting.web.starlette import broadcasting_router, broadcasting_routes

broadcast = Broadcast({"DRIVER": "memory"})
SESSIONS = {"token-of-ada": {"id": "1", "name": "Ada"}}


async def current_user(request: Request) -> dict[str, str] | None:
    return SESSIONS.get(request.cookies.get("session", ""))


# FastAPI: the router, and publishing from an async view
@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with broadcast:
        yield


app = FastAPI(lifespan=lifespan)
router = broadcasting_router(broadcast, user=current_user, user_data=None, driver="memory")
assert_type(router, APIRouter)
app.include_router(router, prefix="/api")


# the user through FastAPI's dependencies (docs/fastapi.md)
async def user_from_header(authorization: Annotated[str, Header()] = "") -> str | None:
    return {"Bearer token-of-ada": "1"}.get(authorization)


# fastapi.Depends() is typed as returning Any; the class it makes is what the router takes
app.include_router(broadcasting_router(broadcast, user=params.Depends(user_from_header)))


@app.post("/orders/{order_id}/ship")
async def ship(order_id: int, request: Request) -> dict[str, str]:
    receipt = await broadcast.achannel(
        f"order-{order_id}",
        {"status": "shipped"},
        "shipped",
        socket_id=socket_id_from(request.headers),
    )
    return {"message_id": receipt.message_id}


# Starlette
routes = broadcasting_routes(broadcast, user=lambda request: {"id": "1"}, webhook_path=None)
assert_type(routes, list[StarletteRoute])
starlette_app = Starlette(routes=routes)

# any framework: AuthEndpoints
endpoints = AuthEndpoints(
    broadcast,
    user=lambda request: {"id": 7},
    user_data=lambda request, user: {"id": "7"},
)
answer = endpoints.handle(
    "auth",
    None,
    method="GET",
    headers={},
    query="socket_id=1.2&channel_name=private-orders.1",
)
assert_type(answer, Response)
assert_type(answer.status, int)
assert_type(answer.ok, bool)
assert_type(answer.content, bytes)
assert_type(answer.headers["content-type"], str)
assert_type(endpoints.error(403), Response)
assert_type(routes_from_endpoints := broadcasting_routes(endpoints), list[StarletteRoute])
assert_type(client_config(broadcast, driver="memory"), dict[str, Any])
assert_type(client_config_html(broadcast), str)


async def handle_async() -> Response:
    return await endpoints.ahandle("webhook", None, method="POST", headers={}, body=b"{}")


# Flask: the blueprint, and the extension
flask_app = flask.Flask(__name__)
blueprint = broadcasting_blueprint(broadcast, user=lambda request: None, url_prefix="/b")
assert_type(blueprint, flask.Blueprint)
flask_app.register_blueprint(blueprint)


@flask_app.post("/orders/<int:order_id>/ship")
def flask_ship(order_id: int) -> dict[str, str]:
    receipt = broadcast.channel(
        f"orders.{order_id}",
        {"id": order_id},
        "shipped",
        socket_id=socket_id_from(flask.request.headers),
    )
    return {"message_id": receipt.message_id}


broadcasting = Broadcasting()
ORDERS = {"ann": ["1", "2"], "bob": ["3"]}


@broadcasting.rule("orders.{order_id}")
def order_owner(user: str, order_id: str) -> bool:
    return order_id in ORDERS.get(user, [])


@broadcasting.on_webhook("member_added")
def joined(event: WebhookEvent) -> None:
    print(event.user_id, "joined", event.channel)


def create_app() -> flask.Flask:
    app = flask.Flask(__name__)
    app.config["BROADCASTING"] = {"DRIVER": "memory"}
    broadcasting.init_app(app)

    @app.post("/orders/<order_id>/ship")
    def ship(order_id: str) -> dict[str, str]:
        receipt = current_broadcast.channel(
            PrivateChannel(f"orders.{order_id}"),
            {"order": order_id},
            "shipped",
            socket_id=socket_id_from(flask.request.headers),
        )
        assert_type(receipt, Receipt)
        return {"shipped": order_id}

    return app


def flask_extension() -> None:
    assert_type(order_owner("ann", "1"), bool)
    assert_type(joined(WebhookEvent("member_added", "presence-b", 0, "1")), None)
    assert_type(broadcasting.broadcast, Broadcast)
    assert_type(current_broadcast, Broadcast)
    assert_type(broadcasting_client_config(), Markup)
