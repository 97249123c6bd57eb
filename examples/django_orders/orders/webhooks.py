"""soketi's webhooks: record who joined the board (``member_added``).

``/broadcasting/webhook`` verifies each delivery (the app key and the HMAC
signature with the app's secret) before any handler runs. A service may
deliver an event twice (Pusher retries a delivery that did not get a 2xx), so
the handler de-duplicates on ``event.id``. The view is sync: the ORM is fine.
"""

from __future__ import annotations

from datetime import datetime, timezone

from broadcasting import WebhookEvent
from django.contrib.auth import get_user_model

from django_orders.broadcast import broadcast
from orders.models import BoardVisit

BOARD = "presence-board"


@broadcast.on_webhook("member_added")
def record_board_join(event: WebhookEvent) -> None:
    if event.channel != BOARD or event.user_id is None or not event.user_id.isdigit():
        return
    user = get_user_model().objects.filter(pk=int(event.user_id)).first()
    BoardVisit.objects.get_or_create(
        event_id=event.id,
        defaults={
            "channel": event.channel,
            "user": user,
            "joined_at": datetime.fromtimestamp(event.time_ms / 1000, tz=timezone.utc),
        },
    )
