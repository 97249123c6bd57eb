"""URLs: the board, Django's login, and the three broadcasting endpoints."""

from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("", include("orders.urls")),
    path("accounts/", include("django.contrib.auth.urls")),  # login, logout
    path("admin/", admin.site.urls),
    # /broadcasting/auth, /broadcasting/user-auth, /broadcasting/webhook. The current user is
    # request.user when it is authenticated (AuthenticationMiddleware): the rules get a User.
    path("broadcasting/", include("broadcasting.contrib.django.urls")),
]
