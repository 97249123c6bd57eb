"""ASGI entry point (uvicorn django_orders.asgi:application); the views stay sync."""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "django_orders.settings")
application = get_asgi_application()
