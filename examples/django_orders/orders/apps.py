"""The app's config: ready() loads the channel rules and the webhook handlers."""

from __future__ import annotations

from django.apps import AppConfig


class OrdersConfig(AppConfig):
    name = "orders"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Importing registers them on the project's Broadcast (once: Python caches the
        # modules), before any request can ask /broadcasting/auth or post a webhook.
        from orders import channels, webhooks  # noqa: F401
