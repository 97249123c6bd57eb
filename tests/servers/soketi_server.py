"""Start and stop a real soketi (the self-hosted Pusher-protocol server) on loopback.

Reusable outside pytest (benchmarks)::

    from soketi_server import SoketiServer
    with SoketiServer() as server:
        options = server.driver_options()   # DRIVERS['pusher'] for this server

soketi 1.6.1 is installed from the lock file in ``tests/servers/soketi``
(``npm ci``; :func:`ensure_installed` runs it when ``node_modules`` is
missing). Its uWebSockets.js dependency points at GitHub, so ``package.json``
overrides it with ``@trufflesuite/uws-js-unofficial``, which installs from
the npm registry and runs on Debian 12 with Node 20.

Everything binds to 127.0.0.1: the HTTP/WebSocket port, the metrics port
(soketi listens there even with metrics off) and the UDP port of its cluster
discovery, which by default binds 0.0.0.0 and broadcasts to 255.255.255.255;
here it only talks to itself on loopback. Each server gets free ports.

soketi 1.6.1 fixes two timings in its code, not its configuration: it tells each client
``activity_timeout: 30`` (ping after 30 s of silence) and ends a connection it has sent nothing
on for 120 s (close code 4201). ``SoketiServer(activity_timeout=3, quiet_close=10)`` runs the
same soketi with those two numbers replaced as its ``ws-handler.js`` is loaded (a ``node -r``
preload; it refuses to start if either number is no longer where it was), so a test of the
keep-alive takes seconds instead of minutes.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

HERE = Path(__file__).resolve().parent
SOKETI_DIR = HERE / "soketi"
CONFIG_FILE = SOKETI_DIR / "soketi.json"
SERVER_JS = SOKETI_DIR / "node_modules" / "@soketi" / "soketi" / "bin" / "server.js"
#: Written once `npm ci` has finished: node_modules is whole.
INSTALLED = SOKETI_DIR / "node_modules" / ".broadcasting-installed"
HOST = "127.0.0.1"


def _base_config() -> dict[str, Any]:
    config: dict[str, Any] = json.loads(CONFIG_FILE.read_text(encoding="utf-8"))
    return config


def _app() -> dict[str, Any]:
    app: dict[str, Any] = _base_config()["appManager.array.apps"][0]
    return app


APP_ID: str = _app()["id"]
APP_KEY: str = _app()["key"]
APP_SECRET: str = _app()["secret"]


#: soketi's ``ws-handler.js`` and the two fixed timings in it, as 1.6.1 writes them.
WS_HANDLER = "@soketi/soketi/dist/ws-handler.js"
ANNOUNCED_ACTIVITY = "activity_timeout: 30,"
QUIET_CLOSE = "}, 120000);"
#: A ``node -r`` preload that replaces them (JSON-encoded strings go in for the placeholders).
_TIMINGS_PRELOAD = """'use strict';
const Module = require('module');
const path = require('path');
const compile = Module.prototype._compile;
const target = path.join(...WS_HANDLER.split('/'));
const swaps = SWAPS;
Module.prototype._compile = function (content, filename) {
  if (filename.endsWith(target)) {
    for (const [before, after] of swaps) {
      if (content.split(before).length !== 2) {
        throw new Error(`soketi_server.py: ${JSON.stringify(before)} is not once in ${filename}`);
      }
      content = content.replace(before, after);
    }
  }
  return compile.call(this, content, filename);
};
"""


#: What soketi prints once it has tried to listen, whether or not it could.
UP = "Server is up and running"


class SoketiUnavailable(RuntimeError):
    """Node.js or npm is missing, or soketi could not be installed."""


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port nothing listens on right now, on 127.0.0.1."""
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def reserve_port(port: int = 0) -> socket.socket:
    """A TCP socket bound to ``port`` (0: any free one) on 127.0.0.1 with ``SO_REUSEPORT``.

    Held while soketi runs, it keeps the port from everyone else: a client's outgoing
    connection never picks a bound port as its own, and a plain ``bind`` to it fails. soketi
    (uWebSockets.js) sets ``SO_REUSEPORT`` too, so it alone can still listen there. A port
    merely found free and closed again can be taken before soketi binds it, and soketi then
    says it is up without listening at all."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((HOST, port))
    except BaseException:
        sock.close()
        raise
    return sock


_refusing: list[socket.socket] = []  # bound, never listening: kept until the process ends


def refused_port() -> int:
    """A port on 127.0.0.1 that refuses every connection for the rest of this process.

    Bound and never listening, so a connect gets a reset at once; and held, so no server a
    parallel test starts on a "free" port can take it meanwhile (a port merely found free
    and closed again can be, and a publish meant to be refused then reaches that server)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((HOST, 0))
    _refusing.append(sock)
    return int(sock.getsockname()[1])


def missing_tools() -> list[str]:
    """The tools soketi needs that are not on PATH."""
    return [tool for tool in ("node", "npm") if shutil.which(tool) is None]


def ensure_installed(timeout: float = 600) -> Path:
    """Run ``npm ci`` in tests/servers/soketi unless soketi is installed; return server.js."""
    missing = missing_tools()
    if missing:
        raise SoketiUnavailable(
            f"{' and '.join(missing)} not found on PATH: soketi (npm @soketi/soketi) needs "
            "Node.js and npm (e.g. `apt-get install nodejs npm`)"
        )
    if INSTALLED.is_file():
        return SERVER_JS
    lock_path = SOKETI_DIR / ".install.lock"
    with lock_path.open("w") as lock:
        # two test workers must not install at once, and neither may start soketi while the
        # other's `npm ci` is still writing node_modules (server.js exists long before its
        # dependencies do): only the mark written after a whole install says it is done
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not INSTALLED.is_file():
            result = subprocess.run(
                ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                cwd=SOKETI_DIR,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
            if result.returncode != 0 or not SERVER_JS.is_file():
                raise SoketiUnavailable(
                    f"`npm ci` in {SOKETI_DIR} failed ({result.returncode}):\n"
                    f"{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
                )
            INSTALLED.write_text("npm ci finished\n", encoding="utf-8")
    return SERVER_JS


class SoketiServer:
    """One soketi process with the app from ``soketi/soketi.json``, on free loopback ports.

    :meth:`stop` then :meth:`start` brings it back on the same port (for
    outage tests). ``config`` entries override the JSON file's (dotted keys,
    as soketi reads them).
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        activity_timeout: int | None = None,
        quiet_close: int | None = None,
        **config: Any,
    ) -> None:
        #: bound (never listening) until :meth:`close`: the ports are this server's alone
        self._reserved = [reserve_port(port or 0), reserve_port()]
        self.port = int(self._reserved[0].getsockname()[1])
        #: soketi's own timings replaced (see the module's docstring): the seconds it gives
        #: clients as ``activity_timeout``, the seconds after which it closes a connection
        #: it has sent nothing on
        self.activity_timeout = activity_timeout
        self.quiet_close = quiet_close
        self.metrics_port = int(self._reserved[1].getsockname()[1])
        self.cluster_port = free_port(socket.SOCK_DGRAM)
        self.overrides = config
        self.scheme = "https" if config.get("ssl.certPath") else "http"
        self.process: subprocess.Popen[bytes] | None = None
        self._started_at = 0
        self._workdir = Path(tempfile.mkdtemp(prefix="soketi-"))
        self.log_path = self._workdir / "soketi.log"

    # -- what clients need -----------------------------------------------------------

    app_id = APP_ID
    key = APP_KEY
    secret = APP_SECRET
    host = HOST

    def driver_options(self, **overrides: Any) -> dict[str, Any]:
        """The ``DRIVERS['pusher']`` mapping for this server (seed key names)."""
        options: dict[str, Any] = {
            "app_id": APP_ID,
            "client": APP_KEY,
            "secret": APP_SECRET,
            "host": HOST,
            "port": self.port,
            "ssl": self.scheme == "https",
        }
        options.update(overrides)
        return options

    def ws_url(self, key: str = APP_KEY) -> str:
        """The Pusher WebSocket URL for app ``key`` (protocol 7)."""
        scheme = "wss" if self.scheme == "https" else "ws"
        return f"{scheme}://{HOST}:{self.port}/app/{key}?protocol=7&client=py-tests&version=1"

    # -- lifecycle -------------------------------------------------------------------

    def _config(self) -> dict[str, Any]:
        config = _base_config()
        config.update(
            {
                "host": HOST,
                "port": self.port,
                "metrics.host": HOST,
                "metrics.port": self.metrics_port,
                "cluster.address": HOST,
                "cluster.unicast": HOST,
                "cluster.port": self.cluster_port,
            }
        )
        config.update(self.overrides)
        return config

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        return self.process is not None and self.process.poll() is None

    def start(self, timeout: float = 30) -> SoketiServer:
        """Start soketi and wait until its HTTP API answers."""
        if self.running:
            return self
        server_js = ensure_installed()
        config_path = self._workdir / "soketi.json"
        config_path.write_text(json.dumps(self._config()), encoding="utf-8")
        env = {k: v for k, v in os.environ.items() if not k.startswith("SOKETI_")}
        env["NODE_NO_WARNINGS"] = "1"
        with self.log_path.open("ab") as log:
            self._started_at = log.tell()  # where this run's lines begin (a restart appends)
            self.process = subprocess.Popen(
                ["node", *self._preload(), str(server_js), "start", f"--config={config_path}"],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=SOKETI_DIR,
                start_new_session=True,
            )
        try:
            self._wait_ready(time.monotonic() + timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _preload(self) -> list[str]:
        """``node`` arguments that replace soketi's fixed timings, if any were given."""
        swaps = []
        if self.activity_timeout is not None:
            swaps.append((ANNOUNCED_ACTIVITY, f"activity_timeout: {int(self.activity_timeout)},"))
        if self.quiet_close is not None:
            swaps.append((QUIET_CLOSE, f"}}, {int(self.quiet_close) * 1000});"))
        if not swaps:
            return []
        script = _TIMINGS_PRELOAD.replace("WS_HANDLER", json.dumps(WS_HANDLER))
        preload = self._workdir / "timings.js"
        preload.write_text(script.replace("SWAPS", json.dumps(swaps)), encoding="utf-8")
        return ["-r", str(preload)]

    def _said_up(self) -> bool:
        with self.log_path.open("rb") as log:
            log.seek(self._started_at)
            return UP.encode() in log.read()

    def _listening(self) -> bool:
        try:
            socket.create_connection((HOST, self.port), timeout=0.5).close()
        except ConnectionRefusedError:
            return False
        except OSError:  # a timeout: busy, not absent
            return True
        return True

    def _answers(self) -> bool:
        if self.scheme == "https":  # a TCP connect is enough; the tests check TLS
            try:
                socket.create_connection((HOST, self.port), timeout=0.5).close()
            except OSError:
                return False
            return True
        try:
            with urllib.request.urlopen(f"http://{HOST}:{self.port}/ready", timeout=1) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def _wait_ready(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            self._check_alive()
            if self._answers():
                return
            if self._said_up() and not self._listening():
                raise RuntimeError(
                    f"soketi says it is up but does not listen on port {self.port}: something "
                    f"else took the port; log:\n{self.log()}"
                )
            time.sleep(0.05)
        raise RuntimeError(f"soketi did not become ready on port {self.port}; log:\n{self.log()}")

    def _check_alive(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(
                f"soketi exited with {self.process.returncode} on start; log:\n{self.log()}"
            )

    def stop(self) -> None:
        """Stop the process (SIGTERM, then SIGKILL) and wait until the port is free."""
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5)

    def close(self) -> None:
        """Stop, give the ports back and remove the temporary files."""
        self.stop()
        for sock in self._reserved:
            sock.close()
        shutil.rmtree(self._workdir, ignore_errors=True)

    def log(self) -> str:
        """What soketi printed so far (the last 4000 characters)."""
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")[-4000:]
        except OSError:
            return ""

    def __enter__(self) -> SoketiServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


@contextlib.contextmanager
def running_soketi(**config: Any) -> Iterator[SoketiServer]:
    """A started :class:`SoketiServer`, closed on exit."""
    with SoketiServer(**config) as server:
        yield server
