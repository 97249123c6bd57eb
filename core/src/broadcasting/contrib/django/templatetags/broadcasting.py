"""``{% load broadcasting %}{% broadcasting_client_config %}``: the browser's config, as a
``<script type="application/json" id="broadcasting-config">`` element (docs/django.md)."""

from __future__ import annotations

from typing import Any

from django import template  # type: ignore[import-untyped, unused-ignore]
from django.urls import NoReverseMatch, reverse  # type: ignore[import-untyped, unused-ignore]
from django.utils.safestring import SafeString, mark_safe  # type: ignore[import-untyped, unused-ignore]

from broadcasting._client import DEFAULT_ELEMENT_ID, client_config, script_element
from broadcasting.web import AUTH_PATH, USER_AUTH_PATH

register = template.Library()


def _path(name: str, default: str) -> str:
    try:
        return str(reverse(name))
    except NoReverseMatch:  # not mounted by name: the paths Echo and the docs default to
        return default


def django_client_config(driver: str | None = None, **overrides: Any) -> dict[str, Any]:
    """:func:`broadcasting.web.client_config` for the project: its ``broadcast``, the endpoints'
    paths reversed (``broadcasting_auth``, ``broadcasting_user_auth``), the overrides of
    ``settings.BROADCASTING_CLIENT`` and then ``overrides``."""
    from django.conf import settings  # type: ignore[import-untyped, unused-ignore]

    from broadcasting.contrib.django import broadcast
    from broadcasting.contrib.django.checks import CLIENT_SETTING

    return client_config(
        broadcast,
        driver=driver,
        auth_endpoint=_path("broadcasting_auth", AUTH_PATH),
        user_auth_endpoint=_path("broadcasting_user_auth", USER_AUTH_PATH),
        overrides={**(getattr(settings, CLIENT_SETTING, None) or {}), **overrides},
    )


@register.simple_tag  # type: ignore[untyped-decorator, unused-ignore]
def broadcasting_client_config(
    driver: str | None = None, element_id: str = DEFAULT_ELEMENT_ID, **overrides: Any
) -> SafeString:
    """The browser's config as ``<script type="application/json" id="broadcasting-config">``.

    ``driver``: a name (default ``DRIVER``); ``element_id``: the element's id; any other
    keyword overrides one of the client's options (``wsHost="ws.example.com"``).
    """
    config = django_client_config(driver, **overrides)
    return mark_safe(script_element(config, element_id))  # escaped by script_element
