"""The orders app's URLs."""

from __future__ import annotations

from django.urls import path

from orders import views

urlpatterns = [
    path("", views.board, name="board"),
    path("orders/<int:order_id>/ship/", views.ship, name="ship"),
]
