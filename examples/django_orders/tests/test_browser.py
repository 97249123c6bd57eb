"""The board in headless Chromium, against a real soketi: what each tab shows.

The example runs in a process of its own (migrated and seeded: ann has two
orders, bob one), under the standard library's WSGI server, with its settings
pointed by environment variables at a soketi started for these tests with the
app of ``soketi.json`` (its webhook URL aimed at that server). The page loads
the browser builds of pusher-js and Laravel Echo from ``tests/js/node_modules``
(the settings' script URLs; the README's are the CDN's). Each user signs in
through Django's login form in a browser context (cookie jar) of their own;
the tests click as a person would and read the page's text.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

EXAMPLE = Path(__file__).resolve().parents[1]
SERVERS = EXAMPLE.parents[1] / "tests" / "servers"
if str(SERVERS) not in sys.path:
    sys.path.insert(0, str(SERVERS))

from local_http import answers, serve_directory, stop  # noqa: E402
from node_clients import NODE_MODULES, NodeClient, require_node, start_client  # noqa: E402
from soketi_pytest import start_soketi  # noqa: E402
from soketi_server import SoketiServer, free_port  # noqa: E402

pytestmark = [pytest.mark.soketi, pytest.mark.server]

HOST = "127.0.0.1"
PASSWORD = "orders-demo"  # the seed_orders command's
CHANNELS, LIVE, MEMBERS, VISITS = (
    f'[data-show="{name}"] li' for name in ("channels", "live", "members", "visits")
)


# -- the servers -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def app_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def soketi(app_port: int) -> Iterator[SoketiServer]:
    """soketi with the example's soketi.json, its webhooks posted to the example's server."""
    config = json.loads((EXAMPLE / "soketi.json").read_text("utf-8"))
    webhook = f"http://{HOST}:{app_port}/broadcasting/webhook"
    for app in config["appManager.array.apps"]:
        app["webhooks"] = [{**hook, "url": webhook} for hook in app["webhooks"]]
    server = start_soketi(**config)  # on a free port; the fixtures' host and port win
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
def vendor() -> Iterator[str]:
    """tests/js/node_modules over HTTP: the browser builds of pusher-js and Laravel Echo."""
    require_node(chromium=True)  # npm ci in tests/js, or skip (fail under CI)
    with serve_directory(NODE_MODULES) as url:
        yield url


@pytest.fixture(scope="module")
def board(
    soketi: SoketiServer, vendor: str, app_port: int, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The example served on ``app_port``, pointed at ``soketi``: its URL."""
    folder = tmp_path_factory.mktemp("django_orders")
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("PUSHER_", "DJANGO_", "ORDERS_", "ECHO_"))
    }
    env.update(
        PYTHONPATH=os.pathsep.join(filter(None, [str(EXAMPLE), os.environ.get("PYTHONPATH")])),
        ORDERS_DATABASE=str(folder / "db.sqlite3"),
        PUSHER_HOST=HOST,
        PUSHER_PORT=str(soketi.port),
        PUSHER_JS_URL=f"{vendor}/pusher-js/dist/web/pusher-with-encryption.min.js",
        ECHO_JS_URL=f"{vendor}/laravel-echo/dist/echo.iife.js",
    )
    log = folder / "server.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, str(EXAMPLE / "tests" / "run_server.py"), str(app_port)],
            cwd=EXAMPLE,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    url = f"http://{HOST}:{app_port}"
    try:
        deadline = time.monotonic() + 30
        while not answers(f"{url}/accounts/login/"):
            assert process.poll() is None, f"the server exited: {log.read_text()}"
            assert time.monotonic() < deadline, f"no answer within 30 s: {log.read_text()}"
            time.sleep(0.05)
        yield url
    finally:
        stop(process)


# -- the browser -------------------------------------------------------------------------------


class Browser:
    """Chromium driven by browser.mjs: ``login()`` and ``open()`` give a :class:`Tab`."""

    def __init__(self, client: NodeClient, url: str) -> None:
        self.client = client
        self.url = url
        self._ids = itertools.count()

    def call(self, reply: str, **command: Any) -> dict[str, Any]:
        sent = next(self._ids)
        self.client.send({**command, "id": sent})
        answer = self.client.expect(timeout=40, where=lambda line: line.get("id") == sent)
        assert answer["type"] == reply, answer
        return answer

    def login(self, user: str, tab: str) -> Tab:
        """A new tab of ``user``'s, signed in through Django's login form: the board."""
        answer = self.call(
            "opened",
            cmd="login",
            tab=tab,
            user=user,
            url=f"{self.url}/accounts/login/",
            username=user,
            password=PASSWORD,
        )
        assert (answer["http_status"], answer["url"]) == (200, f"{self.url}/")
        return Tab(self, tab)

    def open(self, user: str, tab: str) -> Tab:
        """Another tab of ``user``'s (signed in already: the same cookies) on the board."""
        answer = self.call("opened", cmd="open", tab=tab, user=user, url=f"{self.url}/")
        assert (answer["http_status"], answer["url"]) == (200, f"{self.url}/")
        return Tab(self, tab)

    def page_errors(self) -> list[dict[str, Any]]:
        return self.client.seen("page_error")


class Tab:
    def __init__(self, browser: Browser, name: str) -> None:
        self.browser = browser
        self.name = name

    def shows(self, selector: str, text: str) -> list[str]:
        """Wait until an element matching ``selector`` shows ``text``; all their texts."""
        answer = self._call("shown", cmd="wait", selector=selector, text=text)
        return list(answer["texts"])

    def texts(self, selector: str) -> list[str]:
        return list(self._call("texts", cmd="read", selector=selector)["texts"])

    def click(self, selector: str) -> None:
        self._call("clicked", cmd="click", selector=selector)

    def fill(self, selector: str, value: str) -> None:
        self._call("filled", cmd="fill", selector=selector, value=value)

    def reload(self) -> None:
        assert self._call("opened", cmd="reload")["http_status"] == 200

    def orders(self) -> dict[str, int]:
        """The orders the page lists: item -> id."""
        found = (re.match(r"#(\d+) (.+?):", text) for text in self.texts("[data-order]"))
        return {match[2]: int(match[1]) for match in found if match}

    def ready(self) -> Tab:
        """Connected, and every channel of the page subscribed."""
        self.shows('[data-show="connection"]', "connected (socket ")
        self.shows(CHANNELS, "presence-board: subscribed")
        for order in self.orders().values():
            self.shows(CHANNELS, f"private-orders.{order}: subscribed")
            self.shows(CHANNELS, f"private-encrypted-orders.{order}: subscribed")
        return self

    def _call(self, reply: str, **command: Any) -> dict[str, Any]:
        return self.browser.call(reply, tab=self.name, **command)


@pytest.fixture(scope="module")
def browser(board: str) -> Iterator[Browser]:
    client = start_client(str(Path(__file__).with_name("browser.mjs")), {"chromium": True})
    try:
        client.expect("ready", timeout=60)
        yield Browser(client, board)
    finally:
        client.close()


@pytest.fixture(autouse=True)
def no_page_errors(browser: Browser) -> Iterator[None]:
    yield
    assert browser.page_errors() == []


# -- what the pages show -----------------------------------------------------------------------


def test_an_order_shipped_in_one_tab_reaches_the_other_tab_and_not_itself(
    browser: Browser,
) -> None:
    first = browser.login("ann", "ann-first").ready()
    second = browser.open("ann", "ann-second").ready()
    mug, towel = first.orders()["Blue mug"], first.orders()["Tea towel"]

    # the first tab ships the mug: fetch() with X-Socket-ID, so the server's to_others()
    # leaves it out; it shows the view's answer, and the second tab hears both events
    first.click(f'[data-ship="{mug}"]')
    assert first.shows(f'[data-order="{mug}"] .status', "shipped") == ["shipped (DHL)"]
    second.shows(LIVE, f"#{mug} tracking code")
    second.shows(LIVE, f"#{mug} Blue mug shipped")
    shipped, code = sorted(second.texts(LIVE))  # two channels: either may come first
    assert shipped == f"#{mug} Blue mug shipped with DHL (private-orders.{mug})"
    # the encrypted event: soketi relayed ciphertext, pusher-with-encryption decrypted it
    assert re.fullmatch(
        rf"#{mug} tracking code JD\d{{10}} \(decrypted, private-encrypted-orders\.{mug}\)", code
    )
    assert second.texts(f'[data-order="{mug}"] .status') == ["shipped (DHL)"]

    # the other way round: what the second tab ships reaches the first; once the first shows
    # it, anything about the mug would have arrived before (one connection, in order)
    second.click(f'[data-ship="{towel}"]')
    first.shows(LIVE, f"#{towel} tracking code")
    first.shows(LIVE, f"#{towel} Tea towel shipped")
    assert sorted(text.split(" ", 2)[:2] for text in first.texts(LIVE)) == [
        [f"#{towel}", "Tea"],
        [f"#{towel}", "tracking"],
    ]
    assert [text.split(" ")[0] for text in second.texts(LIVE)] == [f"#{mug}", f"#{mug}"]


def test_someone_elses_order_is_refused_with_403_and_the_page_says_so(browser: Browser) -> None:
    ann = browser.login("ann", "ann-owner").ready()
    mug = ann.orders()["Blue mug"]
    bob = browser.login("bob", "bob-follower").ready()  # his own order: subscribed

    bob.fill("#follow input[name=order]", str(mug))
    bob.click("#follow button")

    bob.shows(CHANNELS, f"private-encrypted-orders.{mug}: refused")
    bob.shows(CHANNELS, f"private-orders.{mug}: refused")
    refused = {text for text in bob.texts(CHANNELS) if f"orders.{mug}:" in text}
    assert refused == {
        f"private-orders.{mug}: refused (403)",
        f"private-encrypted-orders.{mug}: refused (403)",
    }


def test_the_board_shows_who_is_looking_and_the_webhooks_recorded_them(
    browser: Browser,
) -> None:
    ann = browser.login("ann", "ann-board").ready()
    bob = browser.login("bob", "bob-board").ready()

    # presence-board: each tab lists the members, once per user whatever their tabs
    assert ann.shows(MEMBERS, "bob") == ["ann", "bob"]
    assert bob.shows(MEMBERS, "ann") == ["ann", "bob"]

    # soketi posted member_added to /broadcasting/webhook; the handler saved each join,
    # which the board lists from the database (a reload shows what has arrived)
    deadline = time.monotonic() + 20
    while True:
        joined = {text.split(" ")[0] for text in ann.texts(VISITS)}
        if {"ann", "bob"} <= joined or time.monotonic() > deadline:
            break
        time.sleep(0.2)
        ann.reload()
    assert {"ann", "bob"} <= joined, ann.texts(VISITS)
