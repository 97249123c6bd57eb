"""The README's marked snippets run as written."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import pytest

from broadcasting import Answer, Batch, Broadcast, Capabilities, Driver, PublishError

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
CORE_README = ROOT / "core" / "README.md"


def snippet(name: str, readme: Path = README) -> str:
    """The ```python block right after ``<!-- snippet: name -->`` in a README."""
    text = readme.read_text(encoding="utf-8")
    found = re.search(rf"<!-- snippet: {name} -->\s*```python\n(.*?)```", text, re.S)
    assert found, f"no snippet {name!r} in {readme.name}"
    return found.group(1)


def test_the_core_readme_quickstart_runs(capsys: pytest.CaptureFixture[str]) -> None:
    exec(compile(snippet("quickstart", CORE_README), "core/README.md", "exec"), {})
    assert capsys.readouterr().out.startswith("memory: 'shipped' -> orders (id ")


class HalfDelivered(Driver):
    """One request per channel: 'a' is acknowledged, 'b' refused, 'c' times out after sending."""

    name = "half"
    capabilities = Capabilities(channels_per_request=1, concurrent_requests=False)

    def send(self, batch: Batch) -> Any:
        channel = batch.channels[0]
        if channel == "b":
            raise PublishError("refused", driver=self.name, status=400)
        if channel == "c":
            raise PublishError("timed out", driver=self.name, retryable=True, maybe_delivered=True)
        return Answer()


def test_the_delivery_snippet_tells_failed_from_unknown(caplog: pytest.LogCaptureFixture) -> None:
    later: list[tuple[str, ...]] = []
    broadcast = Broadcast({"DRIVER": "half"})
    namespace: dict[str, Any] = {
        "broadcast": broadcast,
        "channels": ["a", "b", "c"],
        "send_later": later.append,
        "log": logging.getLogger("app"),
    }
    from broadcasting import register_driver, unregister_driver

    register_driver("half", HalfDelivered)
    try:
        with caplog.at_level(logging.WARNING, "app"):
            exec(compile(snippet("delivery"), "README.md", "exec"), namespace)
    finally:
        unregister_driver("half")
    assert later == [("b",)]
    assert "maybe delivered to ('c',)" in caplog.text
