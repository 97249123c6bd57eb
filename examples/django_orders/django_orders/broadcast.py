"""The project's one Broadcast, configured from ``settings.BROADCASTING``.

Import it wherever the project publishes (``from django_orders.broadcast import
broadcast``). The channel rules and webhook handlers are registered on it by
each app's own modules (``orders/channels.py``, ``orders/webhooks.py``), which
the app's ``AppConfig.ready()`` imports: so they are in place before the first
request reaches ``/broadcasting/auth`` or ``/broadcasting/webhook``.
"""

from __future__ import annotations

from broadcasting import Broadcast
from django.conf import settings

broadcast = Broadcast(settings.BROADCASTING)
