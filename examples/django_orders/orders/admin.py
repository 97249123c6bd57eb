"""The admin, to look at orders and board visits."""

from __future__ import annotations

from django.contrib import admin

from orders.models import BoardVisit, Order

admin.site.register(Order)
admin.site.register(BoardVisit)
