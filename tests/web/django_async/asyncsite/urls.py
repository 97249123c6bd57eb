from __future__ import annotations

from django.urls import path
from orders import views

urlpatterns = [
    path("orders/", views.create_order),
    path("orders/announced/", views.create_order_announced),
    path("orders/unsaved/", views.create_order_outside),
    path("atomic/orders/", views.create_order_in_request),
    path("atomic/orders/outbox/", views.create_order_in_request_outbox),
]
