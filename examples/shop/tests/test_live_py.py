"""``python examples/shop/live.py``: starts soketi and the shop, says what to open, stops both.

It runs with the soketi the test suite installs (``--soketi``), on free ports,
as a new user would run it otherwise.
"""

from __future__ import annotations

import contextlib
import json
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from shop_testing import SHOP, answers, clean_env
from soketi_pytest import soketi_unavailable
from soketi_server import SoketiUnavailable, ensure_installed, free_port

pytestmark = [pytest.mark.soketi, pytest.mark.server]


def soketi_js() -> Path:
    try:
        return ensure_installed()
    except SoketiUnavailable as exc:
        soketi_unavailable(str(exc))


def read_lines(process: subprocess.Popen[str], lines: queue.Queue[str]) -> None:
    for line in process.stdout or ():
        lines.put(line)


def read_until(text: str, lines: queue.Queue[str], process: subprocess.Popen[str]) -> str:
    """What the process printed, up to the line that says ``text`` (within 60 s)."""
    said: list[str] = []
    deadline = time.monotonic() + 60
    while not said or text not in said[-1]:
        assert process.poll() is None, f"exited with {process.returncode}: {''.join(said)}"
        assert time.monotonic() < deadline, f"not said within 60 s: {''.join(said)}"
        with contextlib.suppress(queue.Empty):
            said.append(lines.get(timeout=1))
    return "".join(said)


def test_live_py_starts_soketi_and_the_shop_prints_the_url_and_stops_both() -> None:
    port, soketi_port = free_port(), free_port()
    command = [sys.executable, str(SHOP / "live.py"), "--port", str(port)]
    command += ["--soketi-port", str(soketi_port), "--soketi", str(soketi_js())]
    process = subprocess.Popen(
        command, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=read_lines, args=(process, lines))
    reader.start()
    try:
        output = read_until("The shop is live", lines, process)
        assert f"soketi: started on 127.0.0.1:{soketi_port}" in output
        assert "soketi: accepted the shop's app key and secret" in output
        assert f"Open http://127.0.0.1:{port}/?customer=ada" in output

        with urllib.request.urlopen(f"http://127.0.0.1:{port}/?customer=ada", timeout=10) as page:
            html = page.read().decode()
        options = re.search(r'type="application/json">(.*?)</script>', html)
        assert options
        assert json.loads(options[1])["wsPort"] == soketi_port
        assert answers(f"http://127.0.0.1:{soketi_port}/ready")
    finally:
        process.send_signal(signal.SIGTERM)  # as Ctrl+C: both servers stop
        assert process.wait(timeout=20) == 0
        reader.join(timeout=5)
    assert not answers(f"http://127.0.0.1:{soketi_port}/ready")
    assert not answers(f"http://127.0.0.1:{port}/")
