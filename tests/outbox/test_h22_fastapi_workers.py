"""docs/background.md's FastAPI lifespan (``relay-lifespan``) served for real: two worker
processes (``uvicorn --workers 2``, ``gunicorn --preload`` with uvicorn's worker), each with
its relay, on a SQLite file that is not there yet, and 50 concurrent POSTs from the moment the
port accepts: both processes make the tables on first use at once, beside the requests.

Every publish a request committed is delivered exactly once, through the ``log`` driver (a
line per delivery in a file the processes append to); no request fails (no 500, no "no such
table", no "database is locked"). SIGTERM with requests in flight: what was committed is
delivered, before the server exits or by its next start, none twice.

The app is the snippet itself, with the ``memory`` driver (per process) swapped for ``log``
and the order's id taken from the URL, so that each delivery names its row.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sqlite3
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from served import HOST, Served, free_port

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
REQUESTS = 50
#: Bounds on waits (never asserted on as speeds): under load on 2 cores a start takes seconds.
START = 30.0
DELIVERY = 30.0

pytestmark = pytest.mark.proof  # 10 to 15 s in all: six web servers started and stopped

_SENT_LOG = """
import logging as _logging
import os as _os

_sent = _logging.getLogger("h22.sent")
_sent.addHandler(_logging.FileHandler(_os.environ["H22_SENT"]))
_sent.setLevel(_logging.INFO)
_sent.propagate = False
"""


def _snippet(name: str) -> str:
    text = (ROOT / "docs" / "background.md").read_text(encoding="utf-8")
    found = re.search(rf"<!-- snippet: {name} -->\n```python\n(.*?)```", text, re.S)
    assert found, f"docs/background.md has no python snippet {name!r}"
    return found.group(1)


def _replace(source: str, old: str, new: str) -> str:
    assert old in source, f"the relay-lifespan snippet no longer says {old!r}"
    return source.replace(old, new)


def app_source() -> str:
    """The ``relay-lifespan`` snippet as a module a server imports (its TestClient part cut)."""
    source = _snippet("relay-lifespan")
    source = source[: source.index("memory = broadcast.driver(")]
    source = _replace(
        source,
        '{"DRIVER": "memory", ',
        '{"DRIVER": "log", "DRIVERS": {"log": {"logger": "h22.sent"}}, ',
    )
    source = _replace(source, '@app.post("/orders")', '@app.post("/orders/{n}")')
    source = _replace(source, "async def create_order()", "async def create_order(n: int)")
    source = _replace(source, '{"id": 1}', '{"id": n}')
    return _SENT_LOG + source


def wait_for(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"not seen in {seconds:g} s: {what}"
        time.sleep(0.02)


def uvicorn(port: int) -> list[str]:
    return [str(BIN / "uvicorn"), "app:app", "--host", HOST, "--port", str(port), "--workers", "2"]


def gunicorn_preload(port: int) -> list[str]:
    return [
        str(BIN / "gunicorn"),
        "app:app",
        "--bind",
        f"{HOST}:{port}",
        "--workers",
        "2",
        "--worker-class",
        "uvicorn.workers.UvicornWorker",
        "--preload",  # the master imports the app (its Broadcast, its outbox), then forks
        "--graceful-timeout",
        "25",
        "--no-control-socket",  # one per user (~/.gunicorn): tests at once would share it
    ]


SERVERS = {"uvicorn": uvicorn, "gunicorn-preload": gunicorn_preload}


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[[str], Served]]:
    (tmp_path / "app.py").write_text(app_source(), encoding="utf-8")
    port = free_port()
    started: list[Served] = []

    def start(kind: str) -> Served:
        env = dict(os.environ, H22_SENT=str(tmp_path / "sent.log"), PYTHONPATH=str(tmp_path))
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        served = Served(SERVERS[kind](port), tmp_path, port, env, START)
        started.append(served)
        return served

    try:
        yield start
    finally:
        for served in started:
            served.kill()


async def _post_all(
    served: Served, ids: range, on_first_answer: Callable[[], None] | None = None
) -> dict[int, str]:
    """POST /orders/<n> for each of ``ids`` at once, as soon as the port accepts; each
    request's status code (or its error's name)."""
    await asyncio.to_thread(served.wait_accepting)
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    async with httpx.AsyncClient(
        base_url=f"http://{HOST}:{served.port}", timeout=START + 10, limits=limits
    ) as client:

        async def post(n: int) -> tuple[int, str]:
            try:
                answer = await client.post(f"/orders/{n}")
            except httpx.HTTPError as exc:
                return n, type(exc).__name__
            return n, f"{answer.status_code} {answer.text[:200]}"

        tasks = [asyncio.ensure_future(post(n)) for n in ids]
        if on_first_answer is not None:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            on_first_answer()
        return dict(await asyncio.gather(*tasks))


def delivered(workdir: Path) -> Counter[int]:
    """The ids of the orders delivered, each as often as the log driver wrote it."""
    sent = workdir / "sent.log"
    text = sent.read_text(encoding="utf-8") if sent.exists() else ""
    return Counter(int(found) for found in re.findall(r'"id": ?(\d+)', text))


def committed(workdir: Path) -> Counter[int]:
    """The ids of the orders whose rows are in the outbox."""
    connection = sqlite3.connect(workdir / "shop.sqlite3")
    try:
        rows = connection.execute("SELECT body FROM broadcasting_outbox").fetchall()
    finally:
        connection.close()
    return Counter(json.loads(body)["id"] for (body,) in rows)


def troubles(log: str) -> list[str]:
    return [
        line
        for line in log.splitlines()
        if re.search(r"Traceback|no such table|database is locked|Exception|ERROR", line)
    ]


@pytest.mark.parametrize("kind", sorted(SERVERS))
def test_two_workers_on_a_fresh_file_deliver_each_publish_once(
    serve: Callable[[str], Served], tmp_path: Path, kind: str
) -> None:
    assert not (tmp_path / "shop.sqlite3").exists()
    served = serve(kind)
    answers = asyncio.run(_post_all(served, range(REQUESTS)))
    assert answers == {n: '200 {"ok":true}' for n in range(REQUESTS)}, served.log()

    everyone = Counter(range(REQUESTS))
    wait_for(lambda: delivered(tmp_path) >= everyone, DELIVERY, "every order delivered")
    assert served.stop() == 0, served.log()
    # the relays stopped: nothing more goes out, so a second delivery would be seen here
    assert delivered(tmp_path) == everyone
    assert committed(tmp_path) == everyone
    assert troubles(served.log()) == []


@pytest.mark.parametrize("kind", sorted(SERVERS))
def test_sigterm_in_flight_delivers_what_was_committed_once(
    serve: Callable[[str], Served], tmp_path: Path, kind: str
) -> None:
    served = serve(kind)
    answers = asyncio.run(
        _post_all(served, range(REQUESTS), lambda: served.process.send_signal(signal.SIGTERM))
    )
    assert served.stop() == 0, served.log()
    answered = {n for n, said in answers.items() if said.startswith("200")}
    assert answered, answers  # the first answer came before the SIGTERM
    assert not [said for said in answers.values() if said[:1] in "45"], answers
    rows = committed(tmp_path)
    assert set(rows) >= answered  # a request answered 200 committed its row
    assert max(rows.values()) == 1
    assert max(delivered(tmp_path).values(), default=1) == 1

    again = serve(kind)  # the next start delivers what the last one left
    again.wait_accepting()
    wait_for(lambda: delivered(tmp_path) >= rows, DELIVERY, "every committed order delivered")
    assert again.stop() == 0, again.log()
    assert delivered(tmp_path) == rows
    assert troubles(served.log() + again.log()) == []
