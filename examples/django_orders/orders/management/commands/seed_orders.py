"""``python manage.py seed_orders``: the demo users (ann, bob) and a few orders each."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from orders.models import Order

PASSWORD = "orders-demo"
ORDERS = {"ann": ["Blue mug", "Tea towel"], "bob": ["Teapot"]}


class Command(BaseCommand):
    help = "Create the demo users ann and bob (password orders-demo) and their orders."

    def handle(self, *args: Any, **options: Any) -> None:
        User = get_user_model()
        for username, items in ORDERS.items():
            user, created = User.objects.get_or_create(username=username)
            if created:
                user.set_password(PASSWORD)
                user.save()
            for item in items:
                Order.objects.get_or_create(customer=user, item=item)
            ids = ", ".join(f"#{o.pk}" for o in Order.objects.filter(customer=user))
            self.stdout.write(f"{username} (password {PASSWORD}): orders {ids}")
