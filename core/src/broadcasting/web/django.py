"""Django: the endpoints as URL patterns for ``include()`` (sync, or async views for ASGI)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from asgiref.sync import sync_to_async
from django.core.exceptions import PermissionDenied  # type: ignore[import-untyped, unused-ignore]
from django.core.handlers.wsgi import WSGIRequest  # type: ignore[import-untyped, unused-ignore]
from django.http import (  # type: ignore[import-untyped, unused-ignore]
    Http404,
    HttpRequest,
    HttpResponse,
    RawPostDataException,
    UnreadablePostError,
)
from django.urls import URLPattern, path  # type: ignore[import-untyped, unused-ignore]
from django.utils.log import log_response  # type: ignore[import-untyped, unused-ignore]

from broadcasting._flow import OFFLOAD, Flow, arun, run
from broadcasting.web import (
    Response,
    _content_length,
    _framework_answers,
    _Hidden,
    as_form,
    logger,
    mount,
)

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from broadcasting._broadcast import Broadcast
    from broadcasting.web import AuthEndpoints, MountOptions, Route

__all__ = ["arequest_user", "broadcasting_urls", "request_user"]

# raised by a user function or rule: Django answers them (403, 404), as from any view
_framework_answers(PermissionDenied, Http404)


def _authenticated(user: Any) -> Any:
    return user if user is not None and getattr(user, "is_authenticated", False) else None


def request_user(request: HttpRequest) -> Any:
    """``request.user`` if it is authenticated, else ``None`` (the default user function)."""
    return _authenticated(getattr(request, "user", None))


async def arequest_user(request: HttpRequest) -> Any:
    """Async twin of :func:`request_user` (``await request.auser()``, Django 5+)."""
    auser = getattr(request, "auser", None)
    if auser is not None:
        return _authenticated(await auser())
    return await sync_to_async(request_user)(request)  # Django 4.2: the lazy user loads on access


def _read(
    endpoints: AuthEndpoints, request: HttpRequest, limit: int
) -> tuple[bytes, Any, int] | Response:
    """The body, the headers to hand on and the size of the body the client sent, or an
    answer if the body cannot be had."""
    given = str(request.META.get("CONTENT_LENGTH") or "")
    length = _content_length(given)
    if given and length is None:
        # request.body would int() it and raise (a 500); HTTP allows digits only
        return endpoints.error(400, "the Content-Length header is not a number")
    if length is not None and length > limit:
        return b"", request.headers, 0  # the handler answers 413 from the header; nothing is read
    try:
        if length is None:
            # no Content-Length (chunked, under ASGI): request.body would read all of it, and
            # with DATA_UPLOAD_MAX_MEMORY_SIZE = None without bound; one byte past the limit
            # is enough for the handler to answer 413
            chunk: bytes = request.read(limit + 1)
            return chunk, request.headers, len(chunk)
        body: bytes = request.body
        return body, request.headers, len(body)
    except RawPostDataException:
        pass  # with csrf=True, CsrfViewMiddleware read a multipart request.POST: use its fields
    except UnreadablePostError:
        # the client went away mid-body (the server's read failed): not the application's error
        logger.debug("the client disconnected before its body was read")
        return endpoints.error(400, "the client disconnected")
    if request.FILES:
        return endpoints.error(400, "the multipart body may hold only named text fields")
    pairs = [(k, v) for k, values in request.POST.lists() for v in values]
    form, headers = as_form(pairs, request.headers)
    # the limit is on the client's body (its Content-Length, within it here), not on the
    # re-encoding: percent-encoded, each byte of non-ASCII text takes three. A body framed by
    # Transfer-Encoding has no Content-Length that counts (RFC 9112 6.3), whatever it says: an
    # ASGI server hands both on and Django parses every chunk, so the re-encoding is measured
    if length is None or "transfer-encoding" in request.headers:
        return form, headers, len(form)
    return form, headers, length


def _query(request: HttpRequest) -> bytes | str:
    """The query string as the client sent it: under WSGI, ``META`` holds its bytes decoded as
    ISO-8859-1 (PEP 3333), so they are recovered, as ``request.GET`` does (ASGI: UTF-8 text)."""
    query = str(request.META.get("QUERY_STRING", ""))
    if isinstance(request, WSGIRequest):
        try:
            return query.encode("iso-8859-1")
        except UnicodeEncodeError:  # not what a WSGI server puts there: taken as it is
            pass
    return query


def _django_response(request: HttpRequest, answer: Response) -> HttpResponse:
    response = HttpResponse(answer.content, status=answer.status, headers=answer.headers)
    if answer.status == 501:
        # not ERROR, as Django logs other 5xx: the driver lacks the feature, no fault
        # of this request (log_response marks the response as logged)
        reason = response.reason_phrase
        log_response(
            "%s: %s", reason, request.path, response=response, request=request, level="warning"
        )
    return response


def _view(endpoints: AuthEndpoints, route: Route, asynchronous: bool) -> Callable[..., Any]:
    """The view of ``route``: sync, or async (for ASGI) running sync user functions in a thread."""
    # Django refuses ORM calls on the event loop: sync_to_async runs them in its thread
    offload = _sync_to_async if asynchronous else None

    def respond(request: HttpRequest) -> Flow[HttpResponse]:
        answer = _read(endpoints, request, endpoints.limit(route))
        if not isinstance(answer, Response):
            body, headers, size = answer
            method = request.method or "GET"
            sent = _Hidden(request, method, headers, body, _query(request), size)
            answer = yield from endpoints._respond(route, sent, offload)
        return _django_response(request, answer)

    if asynchronous:

        async def view(request: HttpRequest) -> HttpResponse:
            token = OFFLOAD.set(offload)  # sync rules and webhook handlers too (the ORM)
            try:
                return await arun(respond(request))
            finally:
                OFFLOAD.reset(token)

    else:

        def view(request: HttpRequest) -> HttpResponse:  # type: ignore[misc]
            return run(respond(request))

    view.__name__ = f"broadcasting_{route.replace('-', '_')}"
    return view


def _sync_to_async(function: Callable[..., Any], *args: Any) -> Any:
    return sync_to_async(function)(*args)


def broadcasting_urls(
    target: Broadcast | AuthEndpoints,
    *,
    csrf: bool = False,
    async_views: bool = False,
    **options: Unpack[MountOptions],
) -> list[URLPattern]:
    """URL patterns ``broadcasting_auth``, ``broadcasting_user_auth`` and ``broadcasting_webhook``.

    Args:
        target: a :class:`~broadcasting.Broadcast`, or a ready
            :class:`~broadcasting.web.AuthEndpoints` (then no ``user``, ``user_data``, ``driver``).
        user: ``user(request)``; by default :func:`request_user` (:func:`arequest_user` with
            ``async_views``, where a sync one runs through ``sync_to_async``: it may use the ORM).
        user_data, driver: as for :class:`~broadcasting.web.AuthEndpoints`.
        csrf: ``False`` exempts the auth views from Django's CSRF check, as pusher-js sends no
            CSRF token (docs/web.md says what that risks); the webhook view is always exempt.
        async_views: serve async views, for ASGI.
        auth_path, user_auth_path, webhook_path: the paths (a leading ``/`` is dropped);
            ``None`` leaves one out.
    """
    views = partial(_view, asynchronous=async_views)
    default_user = arequest_user if async_views else request_user
    patterns: list[URLPattern] = []
    for route, where, view in mount(target, options, views, default_user):
        if route == "webhook" or not csrf:
            # what csrf_exempt sets, without a wrapper (an async view stays async)
            view.csrf_exempt = True  # type: ignore[attr-defined]
        patterns.append(path(where.lstrip("/"), view, name=view.__name__))
    return patterns
