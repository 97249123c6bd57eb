"""Starlette and FastAPI: the endpoints as async routes; a sync ``user`` runs in the thread pool."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response as StarletteResponse
from starlette.routing import Route as StarletteRoute

from broadcasting.web import (
    METHODS,
    AuthEndpoints,
    Route,
    RouteOptions,
    _content_length,
    _framework_answers,
    logger,
    mount,
)

if TYPE_CHECKING:
    from fastapi import APIRouter
    from fastapi.params import Depends
    from typing_extensions import Unpack

    from broadcasting._broadcast import Broadcast
    from broadcasting.web import MountOptions, UserFunction

__all__ = ["broadcasting_router", "broadcasting_routes", "read_body"]

_framework_answers(HTTPException)  # FastAPI's is a subclass: raised from user functions


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
    async def endpoint(request: Request) -> StarletteResponse:
        try:
            body = await read_body(request, endpoints.limit(route))
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
        return StarletteResponse(answer.content, status_code=answer.status, headers=answer.headers)

    endpoint.__name__ = f"broadcasting_{route.replace('-', '_')}"
    return endpoint


def _mounted(
    target: Broadcast | AuthEndpoints, options: MountOptions
) -> list[tuple[Route, str, Callable[[Request], Awaitable[StarletteResponse]]]]:
    """:func:`~broadcasting.web.mount` with each path checked: a str starting with ``/``."""
    mounted = mount(target, options, _endpoint)
    for route, path, _ in mounted:
        keyword = f"{route.replace('-', '_')}_path"
        if not isinstance(path, str):
            raise TypeError(f"{keyword} must be a str or None, not {type(path).__name__}")
        if not path.startswith("/"):
            raise ValueError(f"{keyword} must start with '/': {path!r}")
    return mounted


def broadcasting_routes(
    target: Broadcast | AuthEndpoints, **options: Unpack[MountOptions]
) -> list[StarletteRoute]:
    """Routes named ``broadcasting_auth``, ``broadcasting_user_auth`` and ``broadcasting_webhook``.

    ``target`` is a :class:`~broadcasting.Broadcast` (then ``user`` is required) or a ready
    :class:`~broadcasting.web.AuthEndpoints` (then no ``user``, ``user_data`` or ``driver``).
    ``user``, ``user_data``, ``driver``: as for AuthEndpoints; ``auth_path``,
    ``user_auth_path``, ``webhook_path``: the paths, where ``None`` leaves that route out.
    """
    if type(options.get("user")).__module__ == "fastapi.params":  # Depends(...), Security(...)
        raise TypeError(
            "user=Depends(...) is resolved by FastAPI's path operations: use "
            "broadcasting_router(), or give broadcasting_routes() a function, user(request)"
        )
    return [
        StarletteRoute(
            path, view, methods=METHODS[route], name=view.__name__, include_in_schema=False
        )
        for route, path, view in _mounted(target, options)
    ]


class RouterOptions(RouteOptions, total=False):
    """:func:`broadcasting_router`'s keywords: those of ``MountOptions``, where ``user`` may
    also be a FastAPI dependency, ``Depends(current_user)``."""

    user: UserFunction | Depends | None


#: Where a route keeps the user its ``Depends(...)`` gave, for ``user(request)`` to read.
_USER_KEY = "broadcasting.user"


async def _user_given(request: Request) -> Any:
    return request.scope[_USER_KEY]


def _depending(view: Callable[[Request], Awaitable[StarletteResponse]], user: Depends) -> Any:
    """``view`` as a path operation that takes the user from FastAPI's dependency ``user``
    (its overrides, sub-dependencies and ``HTTPException``s as on any route)."""

    async def endpoint(request: Request, user: Any) -> StarletteResponse:
        request.scope[_USER_KEY] = user
        return await view(request)

    endpoint.__name__ = view.__name__
    endpoint.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [
            inspect.Parameter(
                "request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Request
            ),
            inspect.Parameter("user", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=user),
        ]
    )
    return endpoint


def broadcasting_router(
    target: Broadcast | AuthEndpoints, **options: Unpack[RouterOptions]
) -> APIRouter:
    """A FastAPI ``APIRouter`` of the routes of :func:`broadcasting_routes` (same keywords and
    names; not in OpenAPI), as path operations: the dependencies of ``include_router()`` and of
    the app run before them (FastAPI includes a plain Starlette route without them).

    ``user`` may be a FastAPI dependency, ``user=Depends(current_user)``: the auth and
    user-auth routes resolve it as any path operation does (``dependency_overrides`` apply),
    and the webhook route, which the service calls, does not run it."""
    from fastapi import APIRouter
    from fastapi.params import Depends

    dependency = options.get("user")
    given: MountOptions = options  # type: ignore[assignment]  # a Depends is replaced below
    if isinstance(dependency, Depends) and not isinstance(target, AuthEndpoints):
        given = {**given, "user": _user_given}  # (mount() refuses a user= for AuthEndpoints)
    router = APIRouter()
    for route, path, view in _mounted(target, given):
        endpoint = view
        if isinstance(dependency, Depends) and route != "webhook":
            endpoint = _depending(view, dependency)
        # the view declares no body, so FastAPI reads none: the view reads it, up to the limit
        router.add_api_route(
            path,
            endpoint,
            methods=list(METHODS[route]),
            name=view.__name__,
            include_in_schema=False,
        )
    return router
