"""Whether the brokers the queue tests need are up: skipped where one is missing, failed
instead under CI (its own module: ``conftest`` as a module name is tests/conftest.py's)."""

from __future__ import annotations

import socket

from soketi_pytest import unavailable


def _reachable(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except OSError:
        return False
    return True


def need(service: str, port: int) -> None:
    """Skip unless ``service`` answers on ``port`` (fail instead under CI)."""
    if _reachable(port):
        return
    unavailable(service, f"{service} is not running on 127.0.0.1:{port}")
