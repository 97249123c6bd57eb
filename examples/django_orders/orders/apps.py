"""The app's config. Its channel rules and webhook handlers are in ``orders/broadcasting.py``,
which the ``broadcasting.contrib.django`` app imports as Django starts."""

from __future__ import annotations

from django.apps import AppConfig


class OrdersConfig(AppConfig):
    name = "orders"
    default_auto_field = "django.db.models.BigAutoField"
