from __future__ import annotations

from django.urls import path
from shop import views

urlpatterns = [
    path("orders/", views.create_order),
    path("orders/nested/", views.nested),
    path("orders/outbox/", views.create_order_outbox),
    path("orders/failing/", views.create_order_failing),
]
