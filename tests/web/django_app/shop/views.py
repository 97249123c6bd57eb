"""A page with the browser's config."""

from __future__ import annotations

from typing import Any

from django.shortcuts import render


def page(request: Any) -> Any:
    return render(request, "shop/page.html")
