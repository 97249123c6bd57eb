"""The app's endpoints: ``broadcasting.web.django``'s views, with the user functions called as
Django expects, and the client's mistakes (4xx) kept out of ``django.request``'s warnings."""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable, Mapping
from typing import Any

from asgiref.sync import iscoroutinefunction
from django.http import HttpRequest, HttpResponse  # type: ignore[import-untyped, unused-ignore]
from django.urls import URLPattern  # type: ignore[import-untyped, unused-ignore]
from django.utils.log import log_response  # type: ignore[import-untyped, unused-ignore]
from django.utils.module_loading import import_string  # type: ignore[import-untyped, unused-ignore]

from broadcasting.contrib.django._broadcast import as_django_expects
from broadcasting.web import AuthEndpoints

__all__ = [
    "ENDPOINTS_SETTING",
    "EndpointSettings",
    "endpoint_settings",
    "remount",
    "url_patterns",
]

#: The optional setting for the endpoints: ``user``, ``user_data``, ``driver``, ``csrf``,
#: ``async_views`` (as ``broadcasting_urls()`` takes them; functions also as dotted paths).
ENDPOINTS_SETTING = "BROADCASTING_ENDPOINTS"
_KEYS = frozenset({"user", "user_data", "driver", "csrf", "async_views"})


def _quiet(view: Callable[..., Any]) -> Callable[..., Any]:
    """``view``, its 4xx answers logged at DEBUG on ``django.request`` (Django would log them
    at WARNING): a refused subscription or a bad request is the client's doing."""

    def mark(request: HttpRequest, response: HttpResponse) -> HttpResponse:
        if 400 <= response.status_code < 500 and not getattr(response, "_has_been_logged", False):
            log_response(
                "%s: %s",
                response.reason_phrase,
                request.path,
                response=response,
                request=request,
                level="debug",
            )
        return response

    wrapped: Callable[..., Any]
    if iscoroutinefunction(view):

        async def wrapped(request: HttpRequest) -> HttpResponse:
            return mark(request, await view(request))

    else:

        def wrapped(request: HttpRequest) -> HttpResponse:
            return mark(request, view(request))

    functools.update_wrapper(wrapped, view)  # the name, and csrf_exempt
    return wrapped


class EndpointSettings:
    """``settings.BROADCASTING_ENDPOINTS``, checked: what :func:`urls` mounts."""

    __slots__ = ("async_views", "csrf", "driver", "user", "user_data")

    def __init__(self, values: Mapping[str, Any]) -> None:
        if not isinstance(values, Mapping):
            raise TypeError(f"{ENDPOINTS_SETTING} must be a dict")
        if unknown := sorted(map(str, set(values) - _KEYS)):
            known = ", ".join(sorted(_KEYS))
            raise TypeError(f"{ENDPOINTS_SETTING} has an unknown key {unknown[0]!r} ({known})")
        self.user = _function(values.get("user"), "user")
        self.user_data = _function(values.get("user_data"), "user_data")
        driver = values.get("driver")
        if driver is not None and not isinstance(driver, str):
            raise TypeError(f"{ENDPOINTS_SETTING}['driver'] must be a driver name")
        self.driver: str | None = driver
        for flag in ("csrf", "async_views"):
            if not isinstance(values.get(flag, False), bool):
                raise TypeError(f"{ENDPOINTS_SETTING}[{flag!r}] must be True or False")
        self.csrf: bool = values.get("csrf", False)
        self.async_views: bool = values.get("async_views", False)


def _function(value: Any, key: str) -> Callable[..., Any] | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = import_string(value)
        except ImportError as exc:
            raise TypeError(
                f"{ENDPOINTS_SETTING}[{key!r}]: cannot import {value!r}: {exc}"
            ) from None
    if not callable(value):
        raise TypeError(f"{ENDPOINTS_SETTING}[{key!r}] must be a function or its dotted path")
    return value  # type: ignore[no-any-return]


def endpoint_settings(overrides: Mapping[str, Any] | None = None) -> EndpointSettings:
    """The endpoints' settings as they are now, with ``overrides`` (TypeError if wrong)."""
    from django.conf import settings  # type: ignore[import-untyped, unused-ignore]

    values = getattr(settings, ENDPOINTS_SETTING, None) or {}
    if not isinstance(values, Mapping):
        raise TypeError(f"{ENDPOINTS_SETTING} must be a dict")
    return EndpointSettings({**values, **(overrides or {})})


def _misconfigured(problem: str) -> list[URLPattern]:
    """The three paths and names, each view raising ``ImproperlyConfigured(problem)``: a
    wrong ``BROADCASTING_ENDPOINTS`` must not stop the URLconf from importing (Django's URL
    checks import it, and an error would end ``manage.py check`` in a traceback before
    ``broadcasting.E004`` could say what is wrong; under a server, the whole site)."""
    from django.core.exceptions import ImproperlyConfigured  # type: ignore[import-untyped, unused-ignore]
    from django.urls import path  # type: ignore[import-untyped, unused-ignore]
    from django.views.decorators.csrf import csrf_exempt  # type: ignore[import-untyped, unused-ignore]

    @csrf_exempt  # type: ignore[untyped-decorator, unused-ignore]
    def view(request: Any) -> Any:
        raise ImproperlyConfigured(problem)

    return [
        path("auth", view, name="broadcasting_auth"),
        path("user-auth", view, name="broadcasting_user_auth"),
        path("webhook", view, name="broadcasting_webhook"),
    ]


class _Patterns(list):  # type: ignore[type-arg]
    """The URL patterns :func:`url_patterns` made, and the overrides they were made with."""

    overrides: Mapping[str, Any]


#: every list of patterns made, so that :func:`remount` renews them when the setting changes
_mounted: weakref.WeakValueDictionary[int, _Patterns] = weakref.WeakValueDictionary()


def url_patterns(**overrides: Any) -> list[URLPattern]:
    """The app's URL patterns: ``auth``, ``user-auth`` and ``webhook``, as
    ``settings.BROADCASTING_ENDPOINTS`` and then ``overrides`` (the same keys) say.

    ``broadcasting.contrib.django.urls`` holds them for the settings alone; call this for a
    second mount (``include((url_patterns(async_views=True), "async"))``). The list follows the
    setting: when it changes (``override_settings``), :func:`remount` renews its patterns.
    """
    patterns = _Patterns(_patterns(overrides))
    patterns.overrides = overrides
    _mounted[id(patterns)] = patterns  # a list has no hash
    return patterns


def remount() -> None:
    """Renew every list :func:`url_patterns` made from the setting as it is now, in place:
    Django's resolvers hold those lists, and read them at each request."""
    for patterns in list(_mounted.values()):
        try:
            patterns[:] = _patterns(patterns.overrides)
        except TypeError as exc:  # a setting that no override fits: refused at each request
            patterns[:] = _misconfigured(str(exc))


def _patterns(overrides: Mapping[str, Any]) -> list[URLPattern]:
    from broadcasting.contrib.django import broadcast
    from broadcasting.web.django import arequest_user, broadcasting_urls, request_user

    try:
        endpoint_settings()
    except TypeError as exc:  # the setting: broadcasting.E004 reports it at start-up
        return _misconfigured(str(exc))
    chosen = endpoint_settings(overrides)  # a bad override is the caller's code: raised
    default_user = arequest_user if chosen.async_views else request_user
    user, user_data = chosen.user or default_user, chosen.user_data
    if not chosen.async_views:
        # async views run a sync user function through sync_to_async already
        user = as_django_expects(user)
        user_data = None if user_data is None else as_django_expects(user_data)
    endpoints = AuthEndpoints(broadcast, user=user, user_data=user_data, driver=chosen.driver)
    patterns = broadcasting_urls(
        endpoints,
        csrf=chosen.csrf,
        async_views=chosen.async_views,
        auth_path="auth",
        user_auth_path="user-auth",
        webhook_path="webhook",
    )
    for pattern in patterns:
        pattern.callback = _quiet(pattern.callback)
    return patterns
