"""``broadcasting_router(broadcast, user=Depends(current_user))``: the current user found the
way a FastAPI application finds it everywhere else, through its dependencies.

Before, ``user=`` took only ``user(request)``, so a ``current_user`` that reads a header,
``OAuth2PasswordBearer`` or a database session through ``Depends()`` had to be run by a router
dependency that kept its answer on ``request.state``; that dependency then ran for the
service's webhook deliveries too, where a ``current_user`` that raises 401 for nobody signed
in refused every webhook. Through FastAPI's own TestClient, with the memory driver (it signs
answers it can verify and webhook deliveries as a service does).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

import pytest
from fastapi import Depends, FastAPI, Header, HTTPException, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.testclient import TestClient

from broadcasting import Broadcast
from broadcasting.web import AuthEndpoints
from broadcasting.web.starlette import broadcasting_router, broadcasting_routes

TOKENS = {"tok-ada": "ada", "tok-bob": "bob"}
ORDERS = {"ada": {"1"}, "bob": {"3"}}
calls: list[str] = []


async def current_user(authorization: Annotated[str, Header()] = "") -> str | None:
    calls.append(authorization)
    return TOKENS.get(authorization.removeprefix("Bearer "))


def signed_in(user: Annotated[str | None, Depends(current_user)]) -> str:
    if user is None:
        raise HTTPException(401, "sign in first", headers={"WWW-Authenticate": "Bearer"})
    return user


@pytest.fixture
def broadcast() -> Iterator[Broadcast]:
    calls.clear()
    made = Broadcast({"DRIVER": "memory"})
    made.rule("orders.{order_id}")(lambda user, order_id: order_id in ORDERS[user])
    made.on_webhook("member_added")(lambda event: None)
    yield made
    made.close()


def client_for(broadcast: Broadcast, user: Any, **options: Any) -> tuple[FastAPI, TestClient]:
    app = FastAPI()
    app.include_router(broadcasting_router(broadcast, user=user, **options))
    return app, TestClient(app)


def subscribe(client: TestClient, channel: str, token: str | None = None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    form = {"socket_id": "1.2", "channel_name": channel}
    return client.post("/broadcasting/auth", data=form, headers=headers)


def test_the_dependency_finds_the_user_from_a_header(broadcast: Broadcast) -> None:
    _, client = client_for(broadcast, Depends(current_user))
    answer = subscribe(client, "private-orders.1", "tok-ada")
    assert answer.status_code == 200
    memory = broadcast.driver("memory").driver
    assert memory.verify(answer.json(), socket_id="1.2", channel="private-orders.1")
    assert subscribe(client, "private-orders.3", "tok-ada").status_code == 403
    assert subscribe(client, "private-orders.3", "tok-bob").status_code == 200
    assert subscribe(client, "private-orders.1").status_code == 403  # None: nobody signed in
    assert calls == ["Bearer tok-ada", "Bearer tok-ada", "Bearer tok-bob", ""]


def test_a_dependency_that_raises_answers_as_on_any_route(broadcast: Broadcast) -> None:
    _, client = client_for(broadcast, Depends(signed_in))
    refused = subscribe(client, "private-orders.1")
    assert (refused.status_code, refused.json()) == (401, {"detail": "sign in first"})
    assert refused.headers["www-authenticate"] == "Bearer"
    assert subscribe(client, "private-orders.1", "tok-ada").status_code == 200


def test_the_webhook_does_not_run_the_users_dependency(broadcast: Broadcast) -> None:
    _, client = client_for(broadcast, Depends(signed_in))  # 401 for a request with no token
    memory = broadcast.driver("memory").driver
    headers, body = memory.webhook_delivery(
        [{"name": "member_added", "channel": "presence-board", "user_id": "ada"}]
    )
    answer = client.post("/broadcasting/webhook", content=body, headers=headers)
    assert (answer.status_code, answer.json()["events"]) == (200, 1)
    assert calls == []


def test_dependency_overrides_apply(broadcast: Broadcast) -> None:
    app, client = client_for(broadcast, Depends(current_user))
    app.dependency_overrides[current_user] = lambda: "bob"
    assert subscribe(client, "private-orders.3").status_code == 200
    assert subscribe(client, "private-orders.1").status_code == 403
    assert calls == []


def test_sign_in_gets_the_user_from_the_dependency(broadcast: Broadcast) -> None:
    _, client = client_for(
        broadcast,
        Depends(current_user),
        user_data=lambda request, user: {"id": user, "name": user.title()},
    )
    headers = {"Authorization": "Bearer tok-ada"}
    answer = client.post("/broadcasting/user-auth", data={"socket_id": "1.2"}, headers=headers)
    assert answer.status_code == 200
    assert answer.json()["user_data"] == '{"id":"ada","name":"Ada"}'
    refused = client.post("/broadcasting/user-auth", data={"socket_id": "1.2"})
    assert refused.status_code == 403


bearer = HTTPBearer(auto_error=False)


def from_bearer(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
) -> str | None:  # module level: FastAPI resolves the annotations in the module's globals
    return None if credentials is None else TOKENS.get(credentials.credentials)


def test_security_is_a_dependency_too(broadcast: Broadcast) -> None:
    _, client = client_for(broadcast, Security(from_bearer))
    assert subscribe(client, "private-orders.1", "tok-ada").status_code == 200
    assert subscribe(client, "private-orders.1", "tok-bob").status_code == 403


def test_the_routes_keep_their_names_and_stay_out_of_openapi(broadcast: Broadcast) -> None:
    app, client = client_for(broadcast, Depends(current_user), auth_path="/pusher/auth")
    assert app.url_path_for("broadcasting_auth") == "/pusher/auth"
    assert app.url_path_for("broadcasting_user_auth") == "/broadcasting/user-auth"
    assert client.get("/openapi.json").json()["paths"] == {}
    assert subscribe(client, "private-orders.1", "tok-ada").status_code == 404  # moved
    form = {"socket_id": "1.2", "channel_name": "private-orders.1"}
    moved = client.post("/pusher/auth", data=form, headers={"Authorization": "Bearer tok-ada"})
    assert moved.status_code == 200


def test_where_a_dependency_cannot_be_resolved_says_so(broadcast: Broadcast) -> None:
    with pytest.raises(TypeError, match=r"use broadcasting_router\(\)"):
        broadcasting_routes(broadcast, user=Depends(current_user))  # type: ignore[typeddict-item]
    endpoints = AuthEndpoints(broadcast, user=lambda request: None)
    with pytest.raises(TypeError, match="to AuthEndpoints, not here"):
        broadcasting_router(endpoints, user=Depends(current_user))
