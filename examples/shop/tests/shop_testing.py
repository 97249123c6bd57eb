"""What the live page's tests share: paths, the environment, Chromium tabs (chromium.mjs)."""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path
from typing import Any

from local_http import answers
from node_clients import NODE_MODULES, NodeClient

__all__ = ["HOST", "NODE_MODULES", "SHOP", "SHOP_APPS", "Browser", "Tab", "answers", "clean_env"]

SHOP = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
#: the apps of the soketi config the example ships (live.py starts soketi with it)
SHOP_APPS = json.loads((SHOP / "soketi" / "soketi.json").read_text("utf-8"))[
    "appManager.array.apps"
]


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without the shop's settings (they would win over the test's)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PUSHER_", "SHOP_", "SOKETI_"))}
    env.update(extra)
    return env


class Tab:
    """One browser tab: what a person does on the page, and what it shows."""

    def __init__(self, browser: Browser, name: str) -> None:
        self.browser, self.name = browser, name

    def click(self, selector: str) -> None:
        self.browser.do("click", self.name, selector=selector)

    def fill(self, selector: str, value: str) -> None:
        self.browser.do("fill", self.name, selector=selector, value=value)

    def shows(self, selector: str, text: str) -> list[str]:
        """Wait until an element matching ``selector`` shows ``text``; every match's text."""
        texts: list[str] = self.browser.do("wait", self.name, selector=selector, text=text)["texts"]
        return texts

    def texts(self, selector: str) -> list[str]:
        """What the elements matching ``selector`` show now."""
        texts: list[str] = self.browser.do("read", self.name, selector=selector)["texts"]
        return texts


class Browser:
    """Headless Chromium running ``chromium.mjs``: tabs of the shop's page."""

    def __init__(self, client: NodeClient, url: str) -> None:
        self.client, self.url = client, url
        self._ids = itertools.count()
        self._tabs = itertools.count(1)

    def do(self, cmd: str, tab: str, **fields: Any) -> dict[str, Any]:
        command_id = next(self._ids)
        self.client.send({"cmd": cmd, "tab": tab, "id": command_id, **fields})
        line = self.client.expect(where=lambda line: line.get("id") == command_id, timeout=30)
        if line["type"] in ("error", "not_shown"):
            raise AssertionError(f"{cmd} in tab {tab} {fields}: {line}")
        return line

    def open(self, customer: str | None) -> Tab:
        """A new tab of the page, signed in as ``customer``, connected to soketi."""
        tab = Tab(self, f"{customer}-{next(self._tabs)}")
        query = f"?customer={customer}" if customer else ""
        assert self.do("open", tab.name, url=f"{self.url}/{query}")["http_status"] == 200
        tab.shows("#connection", "connected · socket ")
        return tab

    def page_errors(self) -> list[dict[str, Any]]:
        return self.client.seen("page_error")
