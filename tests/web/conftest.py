"""Fixtures of the web adapter tests: one client per framework, each over its own test client."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from web_support import (  # noqa: E402
    Recorder,
    WebClient,
    django_client,
    flask_client,
    handler_client,
    make_broadcast,
    starlette_client,
)

FRAMEWORKS = ["handler", "handler-async", "starlette", "fastapi", "django", "django-async", "flask"]


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture(params=FRAMEWORKS)
def web(request: pytest.FixtureRequest, recorder: Recorder) -> Iterator[WebClient]:
    """The endpoints of one Broadcast, mounted on each framework in turn."""
    broadcast = make_broadcast(recorder)
    name = request.param
    try:
        if name in ("handler", "handler-async"):
            yield handler_client(broadcast, asynchronous=name == "handler-async")
        elif name in ("starlette", "fastapi"):
            client, test_client = starlette_client(broadcast, fastapi=name == "fastapi")
            with test_client:
                yield client
        elif name in ("django", "django-async"):
            yield from django_client(broadcast, asynchronous=name == "django-async")
        else:
            yield flask_client(broadcast)
    finally:
        broadcast.close()
