"""pytest glue for soketi: skip where Node.js/npm are missing, fail instead when ``CI`` is set."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any, NoReturn

import pytest
from nginx_balancer import NginxBalancer, NginxUnavailable
from soketi_server import SoketiServer, SoketiUnavailable


def unavailable(what: str, reason: str) -> NoReturn:
    """Skip (or, with CI set, fail) because ``what`` (soketi, PostgreSQL, a broker) cannot
    be had here: under CI every service the tests use must run."""
    if os.environ.get("CI"):
        pytest.fail(f"{what} is required in CI: {reason}", pytrace=False)
    pytest.skip(reason)


def soketi_unavailable(reason: str) -> NoReturn:
    """Skip (or, with CI set, fail) because soketi cannot run here."""
    unavailable("soketi", reason)


def start_soketi(**config: Any) -> SoketiServer:
    """A started soketi with ``config`` overrides, or skip/fail if it cannot run."""
    server = SoketiServer(**config)
    try:
        return server.start()
    except SoketiUnavailable as exc:
        server.close()
        soketi_unavailable(str(exc))


def running_soketi(**config: Any) -> Iterator[SoketiServer]:
    """A started soketi with ``config`` overrides, closed when the generator ends: the body of
    every ``soketi`` fixture (``yield from running_soketi()``), each at the scope it needs."""
    server = start_soketi(**config)
    try:
        yield server
    finally:
        server.close()


def running_nginx(nodes: Sequence[tuple[str, int]]) -> Iterator[NginxBalancer]:
    """nginx, configured by docs/scaling.md's snippet, balancing over ``nodes``, or skip (fail
    under CI) if it cannot run; closed when the generator ends: the body of every balancer
    fixture (``yield from running_nginx(...)``)."""
    balancer = NginxBalancer(nodes)
    try:
        balancer.start()
    except NginxUnavailable as exc:
        balancer.close()
        unavailable("nginx", str(exc))
    try:
        yield balancer
    finally:
        balancer.close()
