"""A sync-only middleware that runs each ``/atomic/`` request in one transaction, committed if
the answer is a success and rolled back otherwise (``ATOMIC_REQUESTS`` refuses async views)."""

from __future__ import annotations

from collections.abc import Callable

from django.db import transaction
from django.http import HttpRequest, HttpResponse


class _Refused(Exception):
    def __init__(self, response: HttpResponse) -> None:
        self.response = response


class AtomicPaths:
    sync_capable = True
    async_capable = False  # so Django runs it in a thread, and the async view inside
    # async_to_sync() from that thread: the one whose connection holds the transaction

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not request.path.startswith("/atomic/"):
            return self.get_response(request)
        try:
            with transaction.atomic():
                response = self.get_response(request)
                if response.status_code >= 400:
                    raise _Refused(response)  # undo what the view saved
        except _Refused as refused:
            return refused.response
        return response
