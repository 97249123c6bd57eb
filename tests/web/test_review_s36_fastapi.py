"""FastAPI idioms around ``broadcasting_router``: dependencies, prefixes, route names, tests.

Through FastAPI's own TestClient, with the memory driver (it signs answers it can verify).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

import pytest

pytest.importorskip("fastapi")

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.testclient import TestClient

from broadcasting import Broadcast
from broadcasting.web.starlette import broadcasting_router

FORM = {"socket_id": "1.2", "channel_name": "private-orders.1"}
USERS = {"tok-ada": {"id": "1", "name": "Ada"}}


@pytest.fixture
def broadcast() -> Iterator[Broadcast]:
    b = Broadcast({"DRIVER": "memory"})
    b.rule("orders.{order_id}")(lambda user, order_id: order_id == user["id"])
    yield b
    b.close()


def require_api_key(request: Request) -> None:
    if request.headers.get("x-api-key") != "k":
        raise HTTPException(401, "no api key")


def test_include_router_dependencies_guard_the_endpoints(broadcast: Broadcast) -> None:
    """``include_router(..., dependencies=[...])`` runs them for every route it includes; the
    broadcasting routes were plain Starlette routes, which FastAPI includes without them, so
    a guard the application put on the router silently did not cover the endpoints."""
    app = FastAPI()
    app.include_router(
        broadcasting_router(broadcast, user=lambda request: USERS["tok-ada"]),
        dependencies=[Depends(require_api_key)],
    )
    with TestClient(app) as client:
        assert client.post("/broadcasting/auth", data=FORM).status_code == 401
        answer = client.post("/broadcasting/auth", data=FORM, headers={"X-API-Key": "k"})
        assert answer.status_code == 200
        assert broadcast.driver("memory").driver.verify(
            answer.json(), socket_id="1.2", channel="private-orders.1"
        )


def test_app_wide_dependencies_guard_the_endpoints(broadcast: Broadcast) -> None:
    app = FastAPI(dependencies=[Depends(require_api_key)])
    app.include_router(broadcasting_router(broadcast, user=lambda request: USERS["tok-ada"]))
    with TestClient(app) as client:
        assert client.post("/broadcasting/user-auth", data={"socket_id": "1.2"}).status_code == 401
        assert client.post("/broadcasting/webhook", content=b"{}").status_code == 401


def bearer_user(request: Request) -> dict[str, str] | None:
    token = request.headers.get("authorization", "").removeprefix("Bearer ")
    return USERS.get(token)


def remember_user(
    request: Request, user: Annotated[dict[str, str] | None, Depends(bearer_user)]
) -> None:
    request.state.user = user


def test_the_current_user_from_a_dependency(broadcast: Broadcast) -> None:
    """The FastAPI way to reuse ``Depends(current_user)``: a router dependency puts it on
    ``request.state`` and ``user=`` reads it there; ``dependency_overrides`` reaches it."""
    app = FastAPI()
    app.include_router(
        broadcasting_router(broadcast, user=lambda request: request.state.user),
        dependencies=[Depends(remember_user)],
    )
    with TestClient(app) as client:
        ada = {"Authorization": "Bearer tok-ada"}
        assert client.post("/broadcasting/auth", data=FORM, headers=ada).status_code == 200
        assert client.post("/broadcasting/auth", data=FORM).status_code == 403
        app.dependency_overrides[bearer_user] = lambda: USERS["tok-ada"]
        assert client.post("/broadcasting/auth", data=FORM).status_code == 200


def test_prefixes_names_and_the_schema(broadcast: Broadcast) -> None:
    api = APIRouter(prefix="/api")

    @api.get("/orders")
    def orders() -> list[int]:
        return [1]

    api.include_router(broadcasting_router(broadcast, user=lambda request: USERS["tok-ada"]))
    app = FastAPI()
    app.include_router(api, prefix="/v1")
    with TestClient(app) as client:
        assert client.post("/v1/api/broadcasting/auth", data=FORM).status_code == 200
        assert client.get("/v1/api/broadcasting/auth", params=FORM).status_code == 200
        assert client.put("/v1/api/broadcasting/auth", data=FORM).status_code == 405
        assert list(client.get("/openapi.json").json()["paths"]) == ["/v1/api/orders"]
    assert app.url_path_for("broadcasting_auth") == "/v1/api/broadcasting/auth"
    assert app.url_path_for("broadcasting_user_auth") == "/v1/api/broadcasting/user-auth"
    assert app.url_path_for("broadcasting_webhook") == "/v1/api/broadcasting/webhook"


def test_a_dependency_reading_the_form_leaves_the_body_to_the_endpoint(
    broadcast: Broadcast,
) -> None:
    """A body the endpoint reads itself: the route declares no body, so FastAPI reads none."""
    seen: list[Any] = []

    def audit(request: Request) -> None:
        seen.append(request.headers.get("content-type"))

    app = FastAPI()
    app.include_router(
        broadcasting_router(broadcast, user=lambda request: USERS["tok-ada"]),
        dependencies=[Depends(audit)],
    )
    with TestClient(app) as client:
        answer = client.post("/broadcasting/auth", json=FORM)
        assert answer.status_code == 200, answer.text
        too_large = client.post("/broadcasting/auth", data={**FORM, "pad": "x" * 9000})
        assert too_large.status_code == 413
        assert too_large.json() == {"error": "request body too large"}
    assert seen == ["application/json", "application/x-www-form-urlencoded"]


def test_a_guarded_router_and_the_webhook_mounted_apart(broadcast: Broadcast) -> None:
    """docs/web.md: the service posting webhooks has no API key; its route goes unguarded."""
    app = FastAPI()
    app.include_router(
        broadcasting_router(broadcast, user=lambda request: USERS["tok-ada"], webhook_path=None),
        dependencies=[Depends(require_api_key)],
    )
    app.include_router(
        broadcasting_router(
            broadcast, user=lambda request: None, auth_path=None, user_auth_path=None
        )
    )
    headers, body = broadcast.driver("memory").driver.webhook_delivery(
        [{"name": "channel_occupied", "channel": "orders"}]
    )
    with TestClient(app) as client:
        assert client.post("/broadcasting/auth", data=FORM).status_code == 401
        delivered = client.post("/broadcasting/webhook", content=body, headers=headers)
        assert delivered.json() == {"ok": True, "events": 1}


@pytest.mark.parametrize("make", ["routes", "router"])
def test_a_path_without_its_leading_slash_is_refused_by_name(
    broadcast: Broadcast, make: str
) -> None:
    """The router took ``auth_path="broadcasting/auth"`` and made a route no request matches;
    the routes failed on Starlette's bare assert (gone under ``python -O``)."""
    from broadcasting.web.starlette import broadcasting_routes

    build = broadcasting_router if make == "router" else broadcasting_routes
    with pytest.raises(ValueError, match=r"^user_auth_path must start with '/': 'broadcasting/x'$"):
        build(broadcast, user=lambda request: None, user_auth_path="broadcasting/x")
    with pytest.raises(TypeError, match=r"^webhook_path must be a str or None, not int$"):
        build(broadcast, user=lambda request: None, webhook_path=5)  # type: ignore[typeddict-item]
