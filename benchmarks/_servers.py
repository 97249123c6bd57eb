"""The servers the benchmarks publish to, all on 127.0.0.1 and stopped on exit.

- soketi, started by the test suite's own ``tests/servers/soketi_server.py`` (``npm ci`` in
  ``tests/servers/soketi`` when it is not installed; its ports held until it stops). Two
  instances: one plain for every timed workload, and one with its Prometheus
  metrics on, used only to count the HTTP API calls a workload makes (the
  metrics cost the server a little work per call, so nothing is timed there).
- the local Ably REST emulator of the test suite, when it is installed.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from _harness import ROOT

SERVERS = ROOT / "tests" / "servers"
if str(SERVERS) not in sys.path:
    sys.path.insert(0, str(SERVERS))

from soketi_server import SoketiServer  # noqa: E402  (the test suite's soketi, on held ports)

HOST = "127.0.0.1"


class Soketi:
    """A running soketi on 127.0.0.1 with the test suite's app (``tests/servers/soketi``)."""

    def __init__(self, *, metrics: bool = False) -> None:
        self.metrics = metrics
        self.server = SoketiServer(**{"metrics.enabled": metrics}).start()

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def metrics_port(self) -> int:
        return self.server.metrics_port

    @property
    def proc(self) -> subprocess.Popen[bytes]:
        if self.server.process is None:
            raise RuntimeError("this soketi has stopped")
        return self.server.process

    @property
    def pusher_options(self) -> dict[str, object]:
        """Keyword arguments for ``pusher.Pusher(...)`` pointing at this server."""
        return {
            "app_id": self.server.app_id,
            "key": self.server.key,
            "secret": self.server.secret,
            "host": HOST,
            "port": self.port,
            "ssl": False,
        }

    def http_calls(self) -> int:
        """HTTP API calls soketi has answered with success so far (metrics instance only)."""
        if not self.metrics:
            raise RuntimeError("this soketi runs without metrics")
        url = f"http://{HOST}:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as resp:
            text = resp.read().decode()
        total = 0
        for line in text.splitlines():
            match = re.match(r"soketi_http_calls_received_total(?:\{[^}]*\})? ([0-9.e+]+)$", line)
            if match:
                total += int(float(match.group(1)))
        return total

    def stop(self) -> None:
        self.server.close()


@contextlib.contextmanager
def soketi(*, metrics: bool = False) -> Iterator[Soketi]:
    server = Soketi(metrics=metrics)
    try:
        yield server
    finally:
        server.stop()


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


ABLY_EMULATOR = ROOT / "tests" / "servers" / "ably_emulator.py"


@dataclass
class AblyServer:
    """The test suite's Ably REST emulator, served by ``_ably_server.py`` in a child process."""

    port: int
    ca_path: str
    key: str
    proc: subprocess.Popen[str]

    def _command(self, command: str) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def publish_requests(self) -> int:
        """Publish requests received since the last :meth:`reset`."""
        return int(self._command("count"))

    def reset(self) -> None:
        """Drop the emulator's records (keeps its memory bounded between repetitions)."""
        self._command("reset")

    def sdk_options(self) -> dict[str, object]:
        """Keyword arguments for ``ably.AblyRest`` / ``AblyRestSync`` aimed at the emulator."""
        return {"key": self.key, "endpoint": HOST, "tls_port": self.port}

    def stop(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


def ably_emulator_installed() -> bool:
    return ABLY_EMULATOR.is_file()


@contextlib.contextmanager
def ably_emulator() -> Iterator[AblyServer]:
    """Start the emulator process; the caller trusts its CA through ``SSL_CERT_FILE``."""
    script = Path(__file__).resolve().parent / "_ably_server.py"
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.wait(timeout=10)
        raise RuntimeError(f"the Ably emulator did not start ({proc.returncode})")
    info = json.loads(line)
    server = AblyServer(info["port"], info["ca_path"], info["key"], proc)
    try:
        yield server
    finally:
        server.stop()
