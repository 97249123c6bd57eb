"""nginx as the load balancer in front of soketi nodes, configured by docs/scaling.md's own
``nginx`` snippet (so the configuration the docs give is the one the tests and the cluster
benchmark run).

The snippet is what a user puts in nginx's ``http`` block; :func:`render` wraps it in a
configuration of its own (a pid file, logs and temporary files in a folder of the run's own)
and points it at the given nodes and a free loopback port: the snippet's three
``server soketi-N:6001 ...;`` lines become one line per node, with the same parameters, and
its ``listen 6001;`` listens on ``127.0.0.1:{port}``. A snippet that no longer has those
lines is an error, not a silently different configuration.

nginx comes from Debian's packages (``nginx-light``; .ci/run installs it). Without it,
:class:`NginxUnavailable` is raised, which the pytest glue turns into a skip (a failure
under ``CI``).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SCALING = ROOT / "docs" / "scaling.md"
HOST = "127.0.0.1"

_UPSTREAM = re.compile(r"^([ \t]*)server soketi-\d+:6001( [^;]*)?;[ \t]*$", re.M)
_LISTEN = re.compile(r"^([ \t]*)listen 6001;[ \t]*$", re.M)


class NginxUnavailable(RuntimeError):
    """nginx is not installed, or did not start."""


class _PortTaken(Exception):
    """nginx could not bind its port: another process had it."""


def snippet(text: str | None = None) -> str:
    """The ``nginx`` block of docs/scaling.md (after ``<!-- snippet: nginx -->``)."""
    text = SCALING.read_text(encoding="utf-8") if text is None else text
    found = re.search(r"<!-- snippet: nginx -->\n```nginx\n(.*?)\n```", text, re.S)
    if found is None:
        raise ValueError("docs/scaling.md has no ```nginx block after <!-- snippet: nginx -->")
    return found.group(1)


def render(nodes: Sequence[tuple[str, int]], port: int, folder: Path, text: str) -> str:
    """A whole nginx configuration: the snippet ``text``, aimed at ``nodes`` and ``port``."""
    upstreams = list(_UPSTREAM.finditer(text))
    if not upstreams or len(_LISTEN.findall(text)) != 1:
        raise ValueError(
            "the nginx snippet must have 'server soketi-N:6001 ...;' lines and one "
            "'listen 6001;' line (tests/servers/nginx_balancer.py fills them in)"
        )
    indent, parameters = upstreams[0].group(1), upstreams[0].group(2) or ""
    servers = "\n".join(f"{indent}server {host}:{p}{parameters};" for host, p in nodes)
    text = _UPSTREAM.sub("", text, count=len(upstreams) - 1)
    text = _UPSTREAM.sub(lambda _: servers, text)
    text = _LISTEN.sub(lambda m: f"{m.group(1)}listen {HOST}:{port};", text)
    temp = "\n".join(
        f"    {kind}_temp_path {folder / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return (
        "worker_processes 1;\n"
        f"pid {folder / 'nginx.pid'};\n"
        f"error_log {folder / 'error.log'} warn;\n"
        "events { worker_connections 4096; }\n"
        "http {\n"
        "    access_log off;\n"
        f"{temp}\n"
        f"{text}\n"
        "}\n"
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


class NginxBalancer:
    """nginx on a free loopback port, balancing over ``nodes`` (``(host, port)`` pairs)."""

    def __init__(self, nodes: Sequence[tuple[str, int]]) -> None:
        self.nodes = list(nodes)
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self._folder = Path(tempfile.mkdtemp(prefix="nginx-"))

    @property
    def log(self) -> str:
        """What nginx wrote to its error log so far."""
        path = self._folder / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def start(self, timeout: float = 15, attempts: int = 3) -> NginxBalancer:
        """Start nginx and wait until a node's ``/ready`` answers through it.

        The port is found free and only then bound by nginx, so another process can take it
        in between (an outgoing connection's local port comes from the same range); nginx
        then exits with "Address already in use", and it is started again on another port,
        up to ``attempts`` times.
        """
        binary = shutil.which("nginx") or next(
            (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)),
            None,
        )
        if binary is None:
            raise NginxUnavailable("nginx is not installed (Debian: apt-get install nginx-light)")
        log = ""
        for _ in range(attempts):
            try:
                return self._start(binary, free_port(), timeout)
            except _PortTaken:
                log = self.log
                (self._folder / "error.log").unlink(missing_ok=True)
        self.close()
        raise NginxUnavailable(f"nginx found its port taken {attempts} times: {log.strip()[-800:]}")

    def _start(self, binary: str, port: int, timeout: float) -> NginxBalancer:
        self.port = port
        config = self._folder / "nginx.conf"
        config.write_text(render(self.nodes, self.port, self._folder, snippet()))
        command = [binary, "-p", str(self._folder), "-c", str(config), "-g", "daemon off;"]
        # -e: the error log from the very start (before the configuration is read); 1.19.5+
        command[1:1] = ["-e", str(self._folder / "error.log")]
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, cwd=self._folder
        )
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                self.process = None
                log = self.log
                if f"{HOST}:{port} failed (98: Address already in use)" in log:
                    raise _PortTaken(port)
                self.close()
                raise NginxUnavailable(f"nginx exited at once: {log.strip()[-800:]}")
            try:
                with urllib.request.urlopen(f"http://{HOST}:{self.port}/ready", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                log = self.log
                self.close()
                raise NginxUnavailable(f"nginx did not answer within {timeout} s: {log[-800:]}")
            time.sleep(0.05)

    def driver_options(self, server_options: dict[str, Any]) -> dict[str, Any]:
        """A node's ``DRIVERS['pusher']`` options, aimed at the balancer instead."""
        options = {k: v for k, v in server_options.items() if k != "hosts"}
        return {**options, "host": HOST, "port": self.port, "ssl": False}

    def close(self) -> None:
        """Stop nginx (idempotent) and remove its folder."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGQUIT)  # graceful: finish what is in flight
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        shutil.rmtree(self._folder, ignore_errors=True)

    def __enter__(self) -> NginxBalancer:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
