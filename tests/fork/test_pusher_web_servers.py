"""Fork safety of the pusher driver under the web servers users run, against real soketi.

Each test starts a real server on loopback with several workers serving an
app of this folder, whose module-level ``Broadcast`` publishes once at import
and once per request, through a proxy in front of soketi that records which
client connection carried each publish. A real Pusher-protocol WebSocket
subscriber then must have received every event exactly once.

* ``gunicorn --preload`` with sync workers (``wsgi_app``): the master imports
  the app and publishes before it forks, leaving a kept-alive connection in
  the driver's sync pool. Each worker must let go of it (``pool_inherited``)
  and publish on a connection of its own.
* ``gunicorn --preload -k uvicorn.workers.UvicornWorker`` (``asgi_app``): the
  master publishes through the async path on the core's background loop (its
  aiohttp session keeps a connection alive); each worker publishes with
  ``achannel`` on its own loop.
* ``uvicorn --workers``: uvicorn starts its workers with multiprocessing's
  *spawn* (nothing is inherited, each worker imports the app itself); the
  async path must hold in several processes at once all the same.
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from pusher_ws import PusherSubscriber
from recording_proxy import RecordingProxy
from serving import Server, get_json, pusher_config, running, visit_every_worker
from soketi_server import SoketiServer

from broadcasting import Broadcast

pytestmark = pytest.mark.soketi

WORKERS = 3


def gunicorn(port: int, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "--preload",
        "--workers",
        str(WORKERS),
        "--bind",
        f"127.0.0.1:{port}",
        "--timeout",
        "60",
        "--graceful-timeout",
        "10",
        "--no-control-socket",
        *extra,
    ]


def uvicorn(port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "--workers",
        str(WORKERS),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--app-dir",
        str(Path(__file__).resolve().parent),
        "asgi_app:app",
    ]


SERVERS = {
    "gunicorn-sync": lambda port: [*gunicorn(port), "wsgi_app:app"],
    "gunicorn-uvicorn-worker": lambda port: [
        *gunicorn(port, "--worker-class", "uvicorn.workers.UvicornWorker"),
        "asgi_app:app",
    ],
    "uvicorn-workers": uvicorn,
}


def serve_and_visit(
    kind: str, soketi: SoketiServer, proxy: RecordingProxy, channel: str, tmp_path: Path
) -> tuple[list[Any], list[Any], int | None, str]:
    """Run the server ``kind``: every worker held once, then more requests; stop it.

    Returns the held answers, the other answers, the server's exit code and its log.
    """
    hold_dir = tmp_path / "hold"
    hold_dir.mkdir()
    env = {
        "FORK_CONFIG": json.dumps(pusher_config(soketi.driver_options(port=proxy.port))),
        "FORK_CHANNEL": channel,
        "FORK_HOLD_DIR": str(hold_dir),
        "FORK_WORKERS": str(WORKERS),
    }
    server: Server
    with running(SERVERS[kind], env, tmp_path / "server.log") as server:
        held = visit_every_worker(server, hold_dir, WORKERS)
        more = [get_json(f"{server.url}/?n={n}") for n in range(WORKERS + 1, 3 * WORKERS + 1)]
        code = server.stop()
        return held, more, code, server.log()


@pytest.mark.parametrize("kind", list(SERVERS))
async def test_every_worker_publishes_on_its_own_connections(
    kind: str,
    soketi: SoketiServer,
    proxy: RecordingProxy,
    direct: Broadcast,
    subscriber: PusherSubscriber,
    tmp_path: Path,
) -> None:
    channel = f"fork-{uuid.uuid4().hex}"
    await subscriber.subscribe(channel)
    held, more, code, log = await asyncio.to_thread(
        serve_and_visit, kind, soketi, proxy, channel, tmp_path
    )
    answers = held + more
    preload = kind.startswith("gunicorn")

    # every worker answered, none hung or failed, and the server stopped cleanly
    workers = {answer["pid"] for answer in held}
    assert len(workers) == WORKERS, f"each held request has a worker of its own: {held}"
    assert {answer["pid"] for answer in more} <= workers, "no worker was replaced"
    assert code == 0, f"{kind} did not stop cleanly (exit {code}):\n{log}"
    for sign in ("Traceback", "WORKER TIMEOUT", "Exception in ASGI application"):
        assert sign not in log, f"{kind} logged {sign!r}:\n{log}"

    # who imported the app (and published at import)
    importers = {answer["imported_by"] for answer in answers}
    if preload:
        assert len(importers) == 1 and not importers & workers, "the master, before the fork"
        assert len({answer["import_message_id"] for answer in answers}) == 1
    else:
        assert importers == workers, "with spawn, each worker imports the app itself"
    expected = [{"pid": pid, "kind": "import", "n": 0} for pid in importers]
    expected += [{"pid": a["pid"], "kind": "request", "n": n} for n, a in enumerate(answers, 1)]

    # the subscriber got every event exactly once; soketi got each publish once
    events = await subscriber.until_marker(lambda m: direct.achannel(channel, m, "marker"))
    assert all(event.channel == channel for event in events)
    assert sorted_events([event.json() for event in events]) == sorted_events(expected)
    published = proxy.published()
    assert sorted_events([data for _, data in published]) == sorted_events(expected)

    # every publish has a message id of its own (ids are random, reseeded in each child)
    ids = [answer["message_id"] for answer in answers]
    ids += list({answer["import_message_id"] for answer in answers})
    assert len(set(ids)) == len(ids) == len(expected), ids

    # no process wrote on a connection another one opened
    ports: dict[int, set[int]] = {}
    for port, data in published:
        ports.setdefault(data["pid"], set()).add(port)
    shared = Counter(port for used in ports.values() for port in used)
    assert all(count == 1 for count in shared.values()), f"connections shared: {ports}"
    if kind == "gunicorn-sync":
        # the master's import left one kept-alive connection in the pool; each worker
        # let go of it and opened exactly one of its own, kept alive for its requests
        assert {(a["pool_inherited"], a["pool_opened"]) for a in answers} == {(1, 1)}
        assert all(len(ports[pid]) == 1 for pid in workers)
        assert proxy.connections == 1 + WORKERS


def sorted_events(events: list[dict[str, Any]]) -> list[tuple[int, str, int]]:
    return sorted((e["pid"], e["kind"], e["n"]) for e in events)
