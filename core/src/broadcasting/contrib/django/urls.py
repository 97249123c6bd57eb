"""The endpoints, for ``path("broadcasting/", include("broadcasting.contrib.django.urls"))``:
``auth``, ``user-auth`` and ``webhook``, named ``broadcasting_auth``,
``broadcasting_user_auth`` and ``broadcasting_webhook``, configured by the optional
``settings.BROADCASTING_ENDPOINTS`` (docs/django.md).

A wrong ``BROADCASTING_ENDPOINTS`` does not stop this module from importing (Django's URL
checks import it, and an error would end ``manage.py check`` in a traceback before
``broadcasting.E004`` could say what is wrong): the three paths then answer 500, their view
raising ``ImproperlyConfigured`` with the check's message (:func:`url_patterns` does so too).
"""

from __future__ import annotations

from broadcasting.contrib.django._endpoints import url_patterns

__all__ = ["url_patterns", "urlpatterns"]

urlpatterns = url_patterns()
