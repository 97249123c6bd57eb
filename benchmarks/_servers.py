"""The servers the benchmarks publish to, all on 127.0.0.1 and stopped on exit.

- soketi (the Pusher-protocol server the test suite uses), run with Node from
  ``tests/servers/soketi/node_modules`` (``npm ci`` there installs it). Two
  instances: one plain for every timed workload, and one with its Prometheus
  metrics on, used only to count the HTTP API calls a workload makes (the
  metrics cost the server a little work per call, so nothing is timed there).
- the local Ably REST emulator of the test suite, when it is installed.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from _harness import ROOT

SOKETI_DIR = ROOT / "tests" / "servers" / "soketi"
SOKETI_BIN = SOKETI_DIR / "node_modules" / "@soketi" / "soketi" / "bin" / "server.js"
HOST = "127.0.0.1"

APP_ID = "424242"
APP_KEY = "bench-key"
APP_SECRET = "bench-secret-value"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _wait_http(url: str, deadline: float, proc: subprocess.Popen[bytes]) -> None:
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited early with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"server not ready at {url}")


@dataclass
class Soketi:
    """A running soketi on 127.0.0.1 with one app."""

    port: int
    metrics_port: int
    metrics: bool
    proc: subprocess.Popen[bytes]
    workdir: Path

    @property
    def pusher_options(self) -> dict[str, object]:
        """Keyword arguments for ``pusher.Pusher(...)`` pointing at this server."""
        return {
            "app_id": APP_ID,
            "key": APP_KEY,
            "secret": APP_SECRET,
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
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        shutil.rmtree(self.workdir, ignore_errors=True)


def soketi_installed() -> bool:
    return SOKETI_BIN.is_file() and shutil.which("node") is not None


def install_soketi() -> None:
    """``npm ci`` in tests/servers/soketi (the lockfile pins soketi and its override)."""
    if shutil.which("npm") is None:
        raise RuntimeError("npm is not installed: soketi cannot be installed")
    subprocess.run(
        ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=SOKETI_DIR,
        check=True,
    )


def start_soketi(*, metrics: bool = False) -> Soketi:
    """Start soketi on free loopback ports and wait until it answers."""
    if not soketi_installed():
        install_soketi()
    port, metrics_port = free_port(), free_port()
    workdir = Path(tempfile.mkdtemp(prefix="bench-soketi-"))
    config = {
        "debug": False,
        "host": HOST,
        "port": port,
        "metrics.enabled": metrics,
        "metrics.host": HOST,
        "metrics.port": metrics_port,
        "appManager.array.apps": [
            {
                "id": APP_ID,
                "key": APP_KEY,
                "secret": APP_SECRET,
                "maxEventChannelsAtOnce": 100,
                "maxEventNameLength": 200,
                "maxEventPayloadInKb": 10,
                "maxEventBatchSize": 10,
                "maxChannelNameLength": 164,
            }
        ],
    }
    config_path = workdir / "soketi.json"
    config_path.write_text(json.dumps(config))
    log = (workdir / "soketi.log").open("wb")
    proc = subprocess.Popen(
        ["node", str(SOKETI_BIN), "start", f"--config={config_path}"],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "NODE_NO_WARNINGS": "1"},
    )
    server = Soketi(port, metrics_port, metrics, proc, workdir)
    try:
        _wait_http(f"http://{HOST}:{port}/ready", time.monotonic() + 30, proc)
        if metrics:
            _wait_http(f"http://{HOST}:{metrics_port}/ready", time.monotonic() + 10, proc)
    except Exception:
        server.stop()
        raise
    return server


@contextlib.contextmanager
def soketi(*, metrics: bool = False) -> Iterator[Soketi]:
    server = start_soketi(metrics=metrics)
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
