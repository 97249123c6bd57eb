"""The endpoints, for ``path("broadcasting/", include("broadcasting.contrib.django.urls"))``:
``auth``, ``user-auth`` and ``webhook``, named ``broadcasting_auth``,
``broadcasting_user_auth`` and ``broadcasting_webhook``, configured by the optional
``settings.BROADCASTING_ENDPOINTS`` (docs/django.md).

A wrong ``BROADCASTING_ENDPOINTS`` does not stop this module from importing (Django's URL
checks import it, and an error would end ``manage.py check`` in a traceback before
``broadcasting.E004`` could say what is wrong): the three paths then answer 500, their view
raising ``ImproperlyConfigured`` with the check's message.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured  # type: ignore[import-untyped, unused-ignore]
from django.urls import URLPattern, path  # type: ignore[import-untyped, unused-ignore]
from django.views.decorators.csrf import csrf_exempt  # type: ignore[import-untyped, unused-ignore]

from broadcasting.contrib.django._endpoints import endpoint_settings, url_patterns

__all__ = ["url_patterns", "urlpatterns"]


def _misconfigured(problem: str) -> list[URLPattern]:
    """The three paths and names, each view raising ``ImproperlyConfigured(problem)``."""

    @csrf_exempt  # type: ignore[untyped-decorator, unused-ignore]
    def view(request: Any) -> Any:
        raise ImproperlyConfigured(problem)

    return [
        path("auth", view, name="broadcasting_auth"),
        path("user-auth", view, name="broadcasting_user_auth"),
        path("webhook", view, name="broadcasting_webhook"),
    ]


try:
    endpoint_settings()
except TypeError as exc:  # broadcasting.E004 reports it at start-up
    urlpatterns = _misconfigured(str(exc))
else:
    urlpatterns = url_patterns()
