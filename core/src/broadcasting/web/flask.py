"""Flask: the endpoints as a Blueprint (sync views)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from flask import Blueprint, Request, request
from flask import Response as FlaskResponse
from werkzeug.exceptions import HTTPException

from broadcasting._flow import run
from broadcasting.web import (
    METHODS,
    AuthEndpoints,
    Response,
    Route,
    _framework_answers,
    _Hidden,
    as_form,
    mount,
)

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from broadcasting._broadcast import Broadcast
    from broadcasting.web import MountOptions

__all__ = ["broadcasting_blueprint"]

_framework_answers(HTTPException)  # abort(401) in a user function: Flask answers it


def _read(endpoints: AuthEndpoints, current: Request, limit: int) -> tuple[bytes, Any] | Response:
    """The raw body and the headers to hand on, or an answer if the body cannot be had."""
    length = current.content_length
    if length is not None and length > limit:
        return b"", current.headers  # the handler answers 413 from the header; nothing is read
    parsed = "form" in current.__dict__  # a before_request hook (or an extension) read
    if length is None and not parsed:  # request.form, consuming the stream: chunked too
        return current.stream.read(limit + 1), current.headers
    body = b"" if length is None else current.get_data(cache=True)
    if body or (length == 0) or not parsed:
        return body, current.headers
    # the fields that hook parsed, handed on as a form: limited by the size the client sent
    # (its Content-Length, checked above), or by the form's own for a chunked body
    if current.files:
        return endpoints.error(400, "the multipart body may hold only named text fields")
    return as_form(list(current.form.items(multi=True)), current.headers)


def _view(endpoints: AuthEndpoints, route: Route) -> Callable[[], FlaskResponse]:
    def view() -> FlaskResponse:
        current: Request = request._get_current_object()  # type: ignore[attr-defined]
        answer = _read(endpoints, current, endpoints.limit(route))
        if not isinstance(answer, Response):
            body, headers = answer
            # the limit is on the body the client sent (its Content-Length, checked in _read):
            # fields a before_request hook parsed, re-encoded by as_form, may take 3 times more
            size = current.content_length
            sent = _Hidden(current, current.method, headers, body, current.query_string, size)
            answer = run(endpoints._respond(route, sent, None))
        return FlaskResponse(answer.content, status=answer.status, headers=dict(answer.headers))

    # a name per route: Flask-WTF's csrf.exempt(view) exempts every view of the same
    # module and name, so one exempted webhook would have exempted the auth views too
    view.__name__ = view.__qualname__ = f"broadcasting_{route.replace('-', '_')}"
    return view


def broadcasting_blueprint(
    target: Broadcast | AuthEndpoints,
    *,
    name: str = "broadcasting",
    url_prefix: str | None = None,
    **options: Unpack[MountOptions],
) -> Blueprint:
    """A Blueprint with the views ``<name>.auth``, ``<name>.user_auth`` and ``<name>.webhook``.

    ``target`` is a :class:`~broadcasting.Broadcast` (then ``user`` is required) or a ready
    :class:`~broadcasting.web.AuthEndpoints` (then no ``user``, ``user_data`` or ``driver``).
    ``user``, ``user_data``, ``driver``: as for AuthEndpoints; ``auth_path``,
    ``user_auth_path``, ``webhook_path``: the paths, where ``None`` leaves that view out;
    ``name``, ``url_prefix``: the Blueprint's.
    """
    blueprint = Blueprint(name, __name__, url_prefix=url_prefix)
    for route, where, view in mount(target, options, _view):
        blueprint.add_url_rule(where, route.replace("-", "_"), view, methods=list(METHODS[route]))
    return blueprint
