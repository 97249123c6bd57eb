"""Flask: the endpoints as a Blueprint (sync views)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from flask import Blueprint, Request, request
from flask import Response as FlaskResponse

from broadcasting.web._handler import (
    AUTH_PATH,
    METHODS,
    USER_AUTH_PATH,
    WEBHOOK_PATH,
    AuthEndpoints,
    Response,
    Route,
    UserDataFunction,
    UserFunction,
    as_form,
    endpoints_for,
    mounted,
)

if TYPE_CHECKING:
    from broadcasting._broadcast import Broadcast, DriverRef

__all__ = ["broadcasting_blueprint"]


def _read(endpoints: AuthEndpoints, current: Request, limit: int) -> tuple[bytes, Any] | Response:
    """The raw body and the headers to hand on, or an answer if the body cannot be had."""
    length = current.content_length
    if length is not None and length > limit:
        return b"", current.headers  # the handler answers 413 from the header; nothing is read
    if length is None:
        return current.stream.read(limit + 1), current.headers
    body = current.get_data(cache=True)
    if body or not length or "form" not in current.__dict__:
        return body, current.headers
    # a before_request hook (or an extension) read request.form, consuming the stream
    if current.files:
        return endpoints.error(400, "the multipart body may hold only named text fields")
    return as_form(list(current.form.items(multi=True)), current.headers)


def _view(endpoints: AuthEndpoints, route: Route) -> Callable[[], FlaskResponse]:
    limit = endpoints.limit(route)

    def view() -> FlaskResponse:
        current: Request = request._get_current_object()  # type: ignore[attr-defined]
        read = _read(endpoints, current, limit)
        if isinstance(read, Response):
            answer = read
        else:
            body, headers = read
            answer = endpoints.handle(
                route,
                current,
                method=current.method,
                headers=headers,
                body=body,
                query=current.query_string,
            )
        return FlaskResponse(answer.content, status=answer.status, headers=dict(answer.headers))

    return view


def broadcasting_blueprint(
    target: Broadcast | AuthEndpoints,
    *,
    user: UserFunction | None = None,
    user_data: UserDataFunction | None = None,
    driver: DriverRef = None,
    name: str = "broadcasting",
    url_prefix: str | None = None,
    auth_path: str | None = AUTH_PATH,
    user_auth_path: str | None = USER_AUTH_PATH,
    webhook_path: str | None = WEBHOOK_PATH,
) -> Blueprint:
    """A Blueprint with the views ``<name>.auth``, ``<name>.user_auth`` and ``<name>.webhook``.

    ``target`` is a :class:`~broadcasting.Broadcast` (then ``user(request)``
    is required) or a ready :class:`~broadcasting.web.AuthEndpoints`; a path
    of ``None`` leaves that view out.
    """
    endpoints = endpoints_for(target, user=user, user_data=user_data, driver=driver)
    blueprint = Blueprint(name, __name__, url_prefix=url_prefix)
    for route, where in mounted(auth_path, user_auth_path, webhook_path):
        endpoint = route.replace("-", "_")
        view = _view(endpoints, route)
        blueprint.add_url_rule(where, endpoint, view, methods=list(METHODS[route]))
    return blueprint
