"""docs/fastapi.md, run: its files make a project whose tests pass, served for real.

Each titled block (```` ```python title="shop.py" ````) is written to its path in a temporary
folder; tests/test_docs.py runs only untitled Python blocks, so every Python block of the page
must be titled (checked here). Then the ``sh`` blocks run there: ``pytest`` (a subprocess, with
the repository's pytest plugin ``broadcast_fake``), and each server line (``uvicorn ...``,
``gunicorn ...``) serves the application against a real soketi started with the app the page
configures. A real Pusher-protocol WebSocket client subscribes to a private channel with the
signature the served ``/broadcasting/auth`` gave it, and must receive what the endpoints publish:
now, and through the outbox and the relay the lifespan runs; but not an event sent ``toOthers``
from its own socket id.
"""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

TESTS = Path(__file__).resolve().parents[1]
ROOT = TESTS.parent
if str(TESTS / "servers") not in sys.path:
    sys.path.insert(0, str(TESTS / "servers"))

from pusher_ws import PusherSubscriber  # noqa: E402
from served import HOST, Served, free_port  # noqa: E402
from soketi_pytest import start_soketi  # noqa: E402
from soketi_server import SoketiServer  # noqa: E402

pytestmark = [pytest.mark.once, pytest.mark.soketi]

PAGE = ROOT / "docs" / "fastapi.md"
_FENCE = re.compile(r"^```(?P<lang>\w*)(?P<info>[^\n]*)\n(?P<code>.*?)^```[ \t]*$", re.M | re.S)
_TITLE = re.compile(r'\btitle="([^"]+)"')
TIMEOUT = 120
#: Bounds on waits (never asserted on as speeds): under load on 2 cores a start takes seconds.
START = 60.0
EVENT = 20.0
#: What the page's settings.py configures by default; the soketi started here has this app.
APP = {"id": "1234567", "key": "app-key", "secret": "app-secret"}
ANN = {"Authorization": "Bearer token-of-ann"}


def blocks() -> list[tuple[str, str | None, str]]:
    """(language, title, code) of each fenced block of the page."""
    text = PAGE.read_text(encoding="utf-8")
    found = []
    for match in _FENCE.finditer(text):
        title = _TITLE.search(match.group("info"))
        found.append((match.group("lang"), title.group(1) if title else None, match.group("code")))
    return found


def commands() -> list[list[str]]:
    lines = [line for lang, _, code in blocks() if lang == "sh" for line in code.splitlines()]
    return [shlex.split(line, comments=True) for line in lines if not line.startswith("pip ")]


def server_lines() -> dict[str, list[str]]:
    return {argv[0]: argv for argv in commands() if argv[0] in ("uvicorn", "gunicorn")}


def test_every_python_block_is_a_file_named_on_its_first_line() -> None:
    python = [(title, code) for lang, title, code in blocks() if lang == "python"]
    assert len(python) >= 3
    for title, code in python:
        assert title is not None, "an untitled python block would run alone in tests/test_docs.py"
        assert code.startswith(f"# {title}\n")


def test_the_page_is_in_the_sites_nav_and_the_readme() -> None:
    assert "      - FastAPI: fastapi.md\n" in (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    assert "](docs/fastapi.md)" in (ROOT / "README.md").read_text(encoding="utf-8")


def test_the_page_shows_both_servers() -> None:
    lines = server_lines()
    assert set(lines) == {"uvicorn", "gunicorn"}
    assert "--workers" in lines["uvicorn"] and "--workers" in lines["gunicorn"]


def write_project(root: Path) -> Path:
    for _, title, code in blocks():
        if title is not None:
            (root / title).parent.mkdir(parents=True, exist_ok=True)
            (root / title).write_text(code, encoding="utf-8")
    return root


def environment(**env: str) -> dict[str, str]:
    dropped = ("PYTEST_", "PUSHER_", "BROADCAST", "OUTBOX_", "COV_", "COVERAGE_")
    environ = {k: v for k, v in os.environ.items() if not k.startswith(dropped)}
    environ.pop("PYTHONPATH", None)
    environ.update(env, PYTHONDONTWRITEBYTECODE="1")
    environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), environ["PATH"]])
    return environ


def test_the_pages_tests_pass(tmp_path: Path) -> None:
    project = write_project(tmp_path)
    [pytest_line] = [argv for argv in commands() if argv[0] == "pytest"]
    argv = [sys.executable, "-m", *pytest_line, "-p", "no:cacheprovider", "-q"]
    done = subprocess.run(
        argv, cwd=project, env=environment(), capture_output=True, text=True, timeout=TIMEOUT
    )
    assert done.returncode == 0, f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    defined = len(re.findall(r"^def test_", (project / "test_shop.py").read_text(), re.M))
    assert f"{defined} passed" in done.stdout, done.stdout


# -- served for real ---------------------------------------------------------------------------


def bound(argv: list[str], port: int) -> list[str]:
    """The page's line, on ``port`` of the loopback, with this interpreter's tools."""
    tool = str(Path(sys.executable).parent / argv[0])
    if argv[0] == "uvicorn":
        return [tool, *argv[1:], "--host", HOST, "--port", str(port)]
    # one control socket per user (~/.gunicorn): tests at once would share it
    return [tool, *argv[1:], "--bind", f"{HOST}:{port}", "--no-control-socket"]


@pytest.fixture(scope="module")
def soketi() -> Iterator[SoketiServer]:
    server = start_soketi(**{"appManager.array.apps": [APP]})
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(params=["uvicorn", "gunicorn"])
def served(
    request: pytest.FixtureRequest, soketi: SoketiServer, tmp_path: Path
) -> Iterator[Served]:
    shop = write_project(tmp_path / "project")
    settings = (shop / "settings.py").read_text(encoding="utf-8")
    assert all(f'"{value}"' in settings for value in APP.values())
    port = free_port()
    env = environment(
        PUSHER_PORT=str(soketi.port), OUTBOX_URL=f"sqlite:///{tmp_path}/outbox.sqlite3"
    )
    server = Served(bound(server_lines()[request.param], port), shop, port, env, START)
    try:
        yield server
    finally:
        server.kill()


async def _a_page_of_ann(soketi: SoketiServer, base_url: str) -> list[tuple[str, str]]:
    """What a browser of ann's does: connect to soketi, subscribe to her order's private
    channel with the signature the application's /broadcasting/auth gives, and watch it
    while the application ships and is paid for that order."""
    async with (
        httpx.AsyncClient(base_url=base_url, timeout=EVENT) as http,
        PusherSubscriber(soketi.ws_url(APP["key"])) as page,
    ):
        form = {"socket_id": page.socket_id, "channel_name": "private-orders.1"}
        assert (await http.post("/broadcasting/auth", data=form)).status_code == 403  # a guest
        answer = await http.post("/broadcasting/auth", data=form, headers=ANN)
        assert answer.status_code == 200, answer.text
        await page.subscribe("private-orders.1", auth={"private-orders.1": answer.json()["auth"]})

        shipped = await http.post("/orders/1/ship", headers=ANN)  # from another tab
        assert shipped.json() == {"shipped": "1"}
        first = await page.next_event(EVENT)
        # from this very tab: toOthers leaves it out; then paid, through the outbox and a
        # relay; one connection's frames arrive in order, so a ship that reached this tab
        # would come before "paid"
        mine = await http.post("/orders/1/ship", headers={**ANN, "X-Socket-ID": page.socket_id})
        assert mine.status_code == 200
        assert (await http.post("/orders/1/pay", headers=ANN)).json() == {"paid": "1"}
        second = await page.next_event(EVENT)
        await page.flush()
        assert page.pending() == 0
        return [(event.event, event.data) for event in (first, second)]


def test_served_publishes_reach_a_subscribed_client(served: Served, soketi: SoketiServer) -> None:
    served.wait_accepting()
    seen = asyncio.run(_a_page_of_ann(soketi, f"http://{HOST}:{served.port}"))
    assert seen == [("OrderShipped", '{"order_id":"1"}'), ("paid", '{"order":"1"}')]
    assert served.stop() == 0, served.log()
    troubles = [
        line
        for line in served.log().splitlines()
        if re.search(r"Traceback|Exception|ERROR|CRITICAL", line)
    ]
    assert troubles == [], served.log()
