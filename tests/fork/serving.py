"""Run a real web server (gunicorn, uvicorn) on loopback for a test, and reach every worker.

Every wait is bounded; the server runs in a session of its own, so what it
started (the master and its workers) is stopped with it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
HOST = "127.0.0.1"
#: Seconds a server gets to start listening, and to stop after SIGTERM.
START_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0
#: Seconds one HTTP request to the app may take (a held one included).
REQUEST_TIMEOUT = 30.0


def pusher_config(options: dict[str, Any]) -> dict[str, Any]:
    """A ``Broadcast`` config with ``pusher`` as the default driver."""
    return {"DRIVER": "pusher", "DRIVERS": {"pusher": options}}


def until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Wait until ``condition()`` holds; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout:g} s waiting for {what}")
        time.sleep(0.02)


@dataclass
class Server:
    """A web server process started by :func:`running`."""

    process: subprocess.Popen[bytes]
    url: str
    log_path: Path

    def log(self) -> str:
        """What the server printed so far."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> int | None:
        """SIGTERM to the server (it stops its workers); its exit code, None if it hung."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(STOP_TIMEOUT)
        return self.process.poll()

    def kill(self) -> None:
        """SIGKILL to the server's whole session (whatever is left of it)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(5)


def _listening(port: int) -> bool:
    try:
        socket.create_connection((HOST, port), timeout=0.5).close()
    except OSError:
        return False
    return True


def free_port() -> int:
    """A port nothing is bound to right now (another process may take it before the server)."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


#: What gunicorn and uvicorn log once bound to ``HOST:port`` (formatted with the port), and
#: when the port was taken first. Only the server's own line proves that what answers on the
#: port is this server, not one that took the port before it.
BOUND = ("Listening at: http://{host}:{port}", "running on http://{host}:{port}")
TAKEN = ("connection in use", "address already in use")


def _taken(server: Server) -> bool:
    log = server.log().lower()
    return any(line in log for line in TAKEN)


@contextlib.contextmanager
def running(
    argv_for: Callable[[int], list[str]], env: dict[str, str], log_path: Path, attempts: int = 3
) -> Iterator[Server]:
    """Start ``argv_for(port)`` (which must bind ``HOST:port``) in this folder on a free port,
    and on another if that one was taken before the server bound it; kill it afterwards."""
    for attempt in range(1, attempts + 1):
        port = free_port()
        argv = argv_for(port)
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **env},
                cwd=HERE,
                start_new_session=True,
            )
        server = Server(process, f"http://{HOST}:{port}", log_path)
        bound = [line.format(host=HOST, port=port) for line in BOUND]

        def settled(server: Server = server, bound: list[str] = bound, port: int = port) -> bool:
            if _taken(server) or server.process.poll() is not None:
                return True
            return any(line in server.log() for line in bound) and _listening(port)

        try:
            until(settled, START_TIMEOUT, f"{argv[2]} to listen on port {port}")
            if _taken(server) and attempt < attempts:
                continue  # the finally below kills it
            assert process.poll() is None, f"{argv[2]} exited at start:\n{server.log()}"
            assert not _taken(server), server.log()
            yield server
            return
        finally:
            server.kill()
    raise AssertionError("unreachable")  # the last attempt yields or fails


def get_json(url: str) -> Any:
    """GET ``url``; its JSON answer (fails on anything but HTTP 200)."""
    with urllib.request.urlopen(url, timeout=REQUEST_TIMEOUT) as response:
        assert response.status == 200
        return json.loads(response.read())


def visit_every_worker(server: Server, hold_dir: Path, workers: int) -> list[Any]:
    """One held request per worker: the answers of ``?n=1&hold=1`` ... ``?n=workers&hold=1``.

    Request ``n + 1`` is sent once ``n`` workers are holding theirs, so it can
    only be taken by a worker that holds none (see ``fork_app.hold``).
    """
    with ThreadPoolExecutor(workers) as pool:
        futures = []
        for n in range(1, workers + 1):
            futures.append(pool.submit(get_json, f"{server.url}/?n={n}&hold=1"))
            latest = futures[-1]
            until(
                lambda n=n, latest=latest: len(list(hold_dir.iterdir())) >= n or latest.done(),
                START_TIMEOUT,
                f"request {n} to be held by a worker of its own; log:\n{server.log()}",
            )
        return [future.result(REQUEST_TIMEOUT) for future in futures]
