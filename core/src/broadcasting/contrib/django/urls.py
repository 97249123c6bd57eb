"""The endpoints, for ``path("broadcasting/", include("broadcasting.contrib.django.urls"))``:
``auth``, ``user-auth`` and ``webhook``, named ``broadcasting_auth``,
``broadcasting_user_auth`` and ``broadcasting_webhook``, configured by the optional
``settings.BROADCASTING_ENDPOINTS`` (docs/django.md)."""

from __future__ import annotations

from broadcasting.contrib.django._endpoints import url_patterns

__all__ = ["url_patterns", "urlpatterns"]

urlpatterns = url_patterns()
