from __future__ import annotations

from django.apps import AppConfig


class ShopConfig(AppConfig):
    name = "shop"

    def ready(self) -> None:
        # what the core's broadcasting.plugins entry point does once installed
        from broadcasting._plugins import register_everywhere
        from broadcasting.contrib.django import transaction

        register_everywhere(transaction)
