"""Django: the endpoints as URL patterns for ``include()``.

In ``urls.py``::

    urlpatterns = [path("", include(broadcasting_urls(broadcast)))]

By default the current user is ``request.user`` when it is authenticated
(Django's ``AuthenticationMiddleware``), and sign-in data is
``{"id": str(user.pk)}``. The views are exempt from CSRF unless ``csrf=True``
(see :func:`broadcasting_urls`); the webhook view always is (its HMAC
signature proves who sent it). ``async_views=True`` serves them as async
views for an ASGI deployment. Needs ``django`` (``pip install broadcasting[django]``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from django.http import HttpRequest, HttpResponse  # type: ignore[import-untyped, unused-ignore]
from django.urls import URLPattern, path  # type: ignore[import-untyped, unused-ignore]

from broadcasting._flow import Flow, arun, run
from broadcasting.web._handler import (
    AUTH_PATH,
    USER_AUTH_PATH,
    WEBHOOK_PATH,
    AuthEndpoints,
    Response,
    Route,
    UserDataFunction,
    UserFunction,
    _content_length,
    _Hidden,
    endpoints_for,
    mounted,
)

if TYPE_CHECKING:
    from broadcasting._broadcast import Broadcast, DriverRef

__all__ = ["arequest_user", "broadcasting_urls", "request_user"]

logger = logging.getLogger("broadcasting.web")


def request_user(request: HttpRequest) -> Any:
    """``request.user`` if it is authenticated, else ``None`` (the default user function)."""
    user = getattr(request, "user", None)
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    return user


async def arequest_user(request: HttpRequest) -> Any:
    """Async twin of :func:`request_user` (``await request.auser()``, Django 5+)."""
    auser = getattr(request, "auser", None)
    if auser is not None:
        user = await auser()
    else:  # Django 4.2: the lazy user object loads itself on first attribute access
        from asgiref.sync import sync_to_async

        user = await sync_to_async(request_user)(request)
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    return user


def _read(
    endpoints: AuthEndpoints, request: HttpRequest, limit: int
) -> tuple[bytes, Any] | Response:
    """The raw body and the headers to hand on, or an answer if the body cannot be had.

    With ``csrf=True``, Django's ``CsrfViewMiddleware`` reads ``request.POST``
    before the view; for a multipart body that consumes the stream, so the
    fields it parsed are handed on as a form instead.
    """
    from django.http.request import (  # type: ignore[import-untyped, unused-ignore]
        RawPostDataException,
        UnreadablePostError,
    )

    given = str(request.META.get("CONTENT_LENGTH") or "")
    length = _content_length(given)
    if given and length is None:
        # request.body would int() it and raise (a 500); HTTP allows digits only
        return endpoints.error(400, "the Content-Length header is not a number")
    if length is not None and length > limit:
        return b"", request.headers  # the handler answers 413 from the header; nothing is read
    try:
        body: bytes = request.body
        return body, request.headers
    except RawPostDataException:
        pass  # the middleware consumed the stream: use the fields it parsed, below
    except UnreadablePostError:
        # the client went away mid-body (the server's read failed): not the application's error
        logger.debug("the client disconnected before its body was read")
        return endpoints.error(400, "the client disconnected")
    if request.FILES:
        return endpoints.error(400, "the multipart body may hold only named text fields")
    pairs = [(key, value) for key, values in request.POST.lists() for value in values]
    form = urlencode(pairs).encode("utf-8")
    headers = {k: v for k, v in request.headers.items() if k.lower() != "content-length"}
    headers["Content-Type"] = "application/x-www-form-urlencoded"
    return form, headers


def _django_response(request: HttpRequest, answer: Response) -> HttpResponse:
    headers = {k: v for k, v in answer.headers.items() if k.lower() != "content-type"}
    response = HttpResponse(
        answer.content,
        status=answer.status,
        content_type=answer.headers.get("content-type", "application/json"),
        headers=headers,
    )
    if answer.status == 501:
        # Django logs every 5xx at ERROR on django.request; a 501 (the driver
        # lacks the feature) is no fault of this request, so at WARNING, as
        # broadcasting.web logs it. log_response marks the response as logged.
        from django.utils.log import log_response  # type: ignore[import-untyped, unused-ignore]

        reason = response.reason_phrase
        log_response(
            "%s: %s", reason, request.path, response=response, request=request, level="warning"
        )
    return response


def _view(endpoints: AuthEndpoints, route: Route, asynchronous: bool) -> Callable[..., Any]:
    """The view of ``route``: sync, or async (for ASGI) running sync user functions in a thread."""
    limit = endpoints.limit(route)
    # Django refuses ORM calls on the event loop: sync_to_async runs them in its thread
    offload = _sync_to_async if asynchronous else None

    def respond(request: HttpRequest) -> Flow[HttpResponse]:
        read = _read(endpoints, request, limit)
        if isinstance(read, Response):
            return _django_response(request, read)
        body, headers = read
        query = str(request.META.get("QUERY_STRING", ""))
        sent = _Hidden(request, request.method or "GET", headers, body, query)
        answer = yield from endpoints._respond(route, sent, offload)
        return _django_response(request, answer)

    if asynchronous:

        async def view(request: HttpRequest) -> HttpResponse:
            return await arun(respond(request))

    else:

        def view(request: HttpRequest) -> HttpResponse:  # type: ignore[misc]
            return run(respond(request))

    view.__name__ = f"broadcasting_{route.replace('-', '_')}"
    return view


def _sync_to_async(function: Callable[..., Any], *args: Any) -> Any:
    from asgiref.sync import sync_to_async

    return sync_to_async(function)(*args)


def broadcasting_urls(
    target: Broadcast | AuthEndpoints,
    *,
    user: UserFunction | None = None,
    user_data: UserDataFunction | None = None,
    driver: DriverRef = None,
    csrf: bool = False,
    async_views: bool = False,
    auth_path: str | None = AUTH_PATH,
    user_auth_path: str | None = USER_AUTH_PATH,
    webhook_path: str | None = WEBHOOK_PATH,
) -> list[URLPattern]:
    """URL patterns for ``/broadcasting/auth``, ``…/user-auth`` and ``…/webhook``.

    Args:
        target: a :class:`~broadcasting.Broadcast`, or a ready
            :class:`~broadcasting.web.AuthEndpoints` (then pass neither
            ``user``, ``user_data`` nor ``driver``).
        user: ``user(request)`` returns the current user or ``None``; by
            default :func:`request_user` (or :func:`arequest_user` with
            ``async_views``). With ``async_views`` a sync function runs in
            a thread (``sync_to_async``), so it may use the ORM.
        user_data: ``user_data(request, user)`` returns the sign-in data (a
            dict with ``id``); by default ``{"id": str(user.pk)}``.
        driver: the driver that signs (default: the ``DRIVER``).
        csrf: ``False`` (the default) exempts the auth views from Django's
            CSRF check, because pusher-js does not send Django's CSRF token.
            The session cookie then authorizes a cross-site POST, which only
            yields a signature for the *attacker's* socket id if the user
            may join that channel: set ``csrf=True`` and send the token from
            the client (pusher-js ``channelAuthorization: {headers:
            {"X-CSRFToken": token}}``) to keep Django's protection.
        async_views: serve async views (for ASGI) that call ``aauthorize``.
        auth_path, user_auth_path, webhook_path: the paths (a leading ``/``
            is dropped; ``include()`` them under any prefix); ``None`` leaves
            that view out.

    The patterns are named ``broadcasting_auth``, ``broadcasting_user_auth``
    and ``broadcasting_webhook``.
    """
    if not isinstance(target, AuthEndpoints) and user is None:
        user = arequest_user if async_views else request_user
    endpoints = endpoints_for(target, user=user, user_data=user_data, driver=driver)
    patterns: list[URLPattern] = []
    for route, where in mounted(auth_path, user_auth_path, webhook_path):
        view = _view(endpoints, route, async_views)
        if route == "webhook" or not csrf:
            # what csrf_exempt sets, without wrapping (an async view stays async)
            view.csrf_exempt = True  # type: ignore[attr-defined]
        patterns.append(path(where.lstrip("/"), view, name=view.__name__))
    return patterns
