"""The app's endpoints twice: as the settings say (sync views) and as async views."""

from __future__ import annotations

from django.urls import include, path
from shop import views

from broadcasting.contrib.django.urls import url_patterns

urlpatterns = [
    path("broadcasting/", include("broadcasting.contrib.django.urls")),
    path("async/broadcasting/", include((url_patterns(async_views=True), "async"))),
    path("page", views.page, name="page"),
]
