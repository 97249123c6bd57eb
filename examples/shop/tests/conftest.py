"""Make the ``shop`` package importable (the example is not installed); fixtures for the live page.

The live page's tests (``test_browser.py``, ``test_live_py.py``) use the
repository's test servers from ``tests/servers``: a soketi with the shop's app
(the one in ``soketi/soketi.json``), the shop under a real uvicorn, and
Debian's Chromium driven through playwright-core (npm, ``tests/js``). Where
Node.js, npm or Chromium is missing they skip, and fail instead under ``CI``.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
SHOP = HERE.parent
SERVERS = SHOP.parents[1] / "tests" / "servers"
for folder in (str(HERE), str(SHOP), str(SERVERS)):
    if folder not in sys.path:
        sys.path.insert(0, folder)

from local_http import serve_directory, stop  # noqa: E402
from node_clients import require_node, start_client  # noqa: E402
from shop_testing import HOST, NODE_MODULES, SHOP_APPS, Browser, answers, clean_env  # noqa: E402
from soketi_pytest import start_soketi  # noqa: E402
from soketi_server import SoketiServer, free_port  # noqa: E402


@pytest.fixture(scope="module")
def soketi() -> Iterator[SoketiServer]:
    """soketi on a free port, with the shop's app (id 1, app-key, app-secret)."""
    server = start_soketi(**{"appManager.array.apps": SHOP_APPS})
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
def vendor() -> Iterator[str]:
    """tests/js/node_modules over HTTP: the browser builds of pusher-js and Laravel Echo.

    The page loads them from a CDN by default; tests have no internet, so the
    shop's script URL settings point here.
    """
    require_node(chromium=True)  # npm ci in tests/js, or skip (fail under CI)
    with serve_directory(NODE_MODULES) as url:
        yield url


@pytest.fixture(scope="module")
def shop(soketi: SoketiServer, vendor: str) -> Iterator[str]:
    """``uvicorn shop.app:app`` in its own process, pointed at ``soketi``: its URL."""
    port = free_port()
    env = clean_env(
        PUSHER_PORT=str(soketi.port),
        SHOP_PUSHER_JS_URL=f"{vendor}/pusher-js/dist/web/pusher.min.js",
        SHOP_ECHO_JS_URL=f"{vendor}/laravel-echo/dist/echo.iife.js",
    )
    command = [sys.executable, "-m", "uvicorn", "shop.app:app", "--app-dir", str(SHOP)]
    command += ["--host", HOST, "--port", str(port), "--log-level", "warning"]
    process = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL)
    url = f"http://{HOST}:{port}"
    try:
        deadline = time.monotonic() + 30
        while not answers(f"{url}/"):
            assert process.poll() is None, f"uvicorn exited with {process.returncode}"
            assert time.monotonic() < deadline, "uvicorn did not answer within 30 s"
            time.sleep(0.05)
        yield url
    finally:
        stop(process)


@pytest.fixture(scope="module")
def browser(shop: str) -> Iterator[Browser]:
    client = start_client(str(HERE / "chromium.mjs"), {"chromium": True})
    try:
        client.expect("ready", timeout=60)
        yield Browser(client, shop)
    finally:
        client.close()
