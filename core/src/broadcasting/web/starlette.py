"""Starlette and FastAPI: the endpoints as async routes; a sync ``user`` runs in the thread pool."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response as StarletteResponse
from starlette.routing import Route as StarletteRoute

from broadcasting.web._handler import (
    AUTH_PATH,
    METHODS,
    USER_AUTH_PATH,
    WEBHOOK_PATH,
    AuthEndpoints,
    Route,
    UserDataFunction,
    UserFunction,
    _content_length,
    endpoints_for,
    mounted,
)

if TYPE_CHECKING:
    from fastapi import APIRouter

    from broadcasting._broadcast import Broadcast, DriverRef

__all__ = ["broadcasting_router", "broadcasting_routes", "read_body"]

logger = logging.getLogger("broadcasting.web")


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, read up to ``limit + 1`` bytes (so a larger one is seen as such)."""
    length = _content_length(request.headers.get("content-length"))
    if length is not None:
        if length > limit:
            return b""  # the handler answers 413 from the header; nothing is read
        return await request.body()  # the server holds it to Content-Length
    received = bytearray()
    async for chunk in request.stream():
        received += chunk
        if len(received) > limit:
            break
    return bytes(received)


def _endpoint(
    endpoints: AuthEndpoints, route: Route
) -> Callable[[Request], Awaitable[StarletteResponse]]:
    limit = endpoints.limit(route)

    async def endpoint(request: Request) -> StarletteResponse:
        try:
            body = await read_body(request, limit)
        except ClientDisconnect:
            # the client's doing, not the application's; nobody reads the answer
            logger.debug("%s: the client disconnected before its body was read", route)
            answer = endpoints.error(400, "the client disconnected")
        else:
            answer = await endpoints.ahandle(
                route,
                request,
                method=request.method,
                headers=request.headers,
                body=body,
                query=request.scope.get("query_string", b""),
                offload=run_in_threadpool,  # a sync user function may block (a query)
            )
        return StarletteResponse(
            answer.content, status_code=answer.status, headers=dict(answer.headers)
        )

    endpoint.__name__ = f"broadcasting_{route.replace('-', '_')}"
    return endpoint


def broadcasting_routes(
    target: Broadcast | AuthEndpoints,
    *,
    user: UserFunction | None = None,
    user_data: UserDataFunction | None = None,
    driver: DriverRef = None,
    auth_path: str | None = AUTH_PATH,
    user_auth_path: str | None = USER_AUTH_PATH,
    webhook_path: str | None = WEBHOOK_PATH,
) -> list[StarletteRoute]:
    """Routes named ``broadcasting_auth``, ``broadcasting_user_auth`` and ``broadcasting_webhook``.

    ``target`` is a :class:`~broadcasting.Broadcast` (then ``user(request)``
    is required) or a ready :class:`~broadcasting.web.AuthEndpoints`; a path
    of ``None`` leaves that route out.
    """
    endpoints = endpoints_for(target, user=user, user_data=user_data, driver=driver)
    return [
        StarletteRoute(
            path,
            _endpoint(endpoints, route),
            methods=list(METHODS[route]),
            name=f"broadcasting_{route.replace('-', '_')}",
            include_in_schema=False,
        )
        for route, path in mounted(auth_path, user_auth_path, webhook_path)
    ]


def broadcasting_router(
    target: Broadcast | AuthEndpoints,
    *,
    user: UserFunction | None = None,
    user_data: UserDataFunction | None = None,
    driver: DriverRef = None,
    auth_path: str | None = AUTH_PATH,
    user_auth_path: str | None = USER_AUTH_PATH,
    webhook_path: str | None = WEBHOOK_PATH,
) -> APIRouter:
    """A FastAPI ``APIRouter`` of :func:`broadcasting_routes` (left out of the OpenAPI schema)."""
    from fastapi import APIRouter

    router = APIRouter()
    router.routes.extend(
        broadcasting_routes(
            target,
            user=user,
            user_data=user_data,
            driver=driver,
            auth_path=auth_path,
            user_auth_path=user_auth_path,
            webhook_path=webhook_path,
        )
    )
    return router
