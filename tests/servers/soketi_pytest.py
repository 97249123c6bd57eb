"""pytest glue for soketi: skip where Node.js/npm are missing, fail instead when ``CI`` is set."""

from __future__ import annotations

import os
from typing import Any, NoReturn

import pytest
from soketi_server import SoketiServer, SoketiUnavailable


def soketi_unavailable(reason: str) -> NoReturn:
    """Skip (or, with CI set, fail) because soketi cannot run here."""
    if os.environ.get("CI"):
        pytest.fail(f"soketi is required in CI: {reason}", pytrace=False)
    pytest.skip(reason)


def start_soketi(**config: Any) -> SoketiServer:
    """A started soketi with ``config`` overrides, or skip/fail if it cannot run."""
    server = SoketiServer(**config)
    try:
        return server.start()
    except SoketiUnavailable as exc:
        server.close()
        soketi_unavailable(str(exc))
