"""Run the official JavaScript clients (pusher-js, Laravel Echo, Chromium) from tests.

The clients live in ``tests/js``: ``package.json`` + ``package-lock.json`` pin
pusher-js, laravel-echo and playwright-core; :func:`ensure_installed` runs
``npm ci`` there once (under a file lock, so parallel test runs do not install
twice) when ``node_modules`` is missing.

A client is a Node ``.mjs`` script in ``tests/js``. :class:`NodeClient` starts
it as a subprocess with one JSON config (``argv[2]``), reads the JSON lines it
prints on stdout (one object per line, each with a ``type``), and can send it
JSON commands, one per line, on stdin::

    from node_clients import NodeClient, start_client

    with start_client("pusher_client.mjs", {"key": ..., "wsPort": ...}) as client:
        client.expect("connected")                       # waits; returns the line
        client.send({"cmd": "subscribe", "channel": "private-orders.1"})
        client.expect("subscribed", channel="private-orders.1")

Waiting is on lines, never on time: ``timeout`` only bounds a failure, and a
client that exits early fails the wait at once with its stderr.

In pytest, :func:`start_client` skips when Node.js, npm (or, with
``chromium=True``, ``/usr/bin/chromium``) is missing, and fails instead when
the ``CI`` environment variable is set, like ``soketi_pytest``.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import queue
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, NoReturn

HERE = Path(__file__).resolve().parent
JS_DIR = HERE.parent / "js"
NODE_MODULES = JS_DIR / "node_modules"
#: What ``npm ci`` must have produced for the clients to run.
PACKAGES = (
    "pusher-js",
    "laravel-echo",
    "playwright-core",
    "ably",
    "ably-v1",
    "@ably/laravel-echo",
    "axios",
)
#: Debian's chromium (CI installs it in .ci/run).
CHROMIUM = Path(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))

Line = dict[str, Any]


class NodeUnavailable(RuntimeError):
    """Node.js, npm or Chromium is missing, or ``npm ci`` in tests/js failed."""


def missing_tools(*, chromium: bool = False) -> list[str]:
    """The tools the clients need that are not here."""
    missing = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    if chromium and not os.access(CHROMIUM, os.X_OK):
        missing.append(f"chromium ({CHROMIUM})")
    return missing


#: Written once `npm ci` has finished: a package.json can be there before the rest of it.
INSTALLED = NODE_MODULES / ".broadcasting-installed"


def _installed() -> bool:
    packages = all((NODE_MODULES / name / "package.json").is_file() for name in PACKAGES)
    return packages and INSTALLED.is_file()


def ensure_installed(*, chromium: bool = False, timeout: float = 600) -> Path:
    """Run ``npm ci`` in tests/js unless its packages are there; return tests/js."""
    missing = missing_tools(chromium=chromium)
    if missing:
        raise NodeUnavailable(
            f"{' and '.join(missing)} not found: the client tests need Node.js and npm "
            "(apt-get install nodejs npm) and, for the browser, Debian's chromium "
            "(apt-get install chromium)"
        )
    if _installed():
        return JS_DIR
    lock_path = JS_DIR / ".install.lock"
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two test runs must not install at once
        if not _installed():
            result = subprocess.run(
                ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                cwd=JS_DIR,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
            if result.returncode == 0:
                INSTALLED.write_text("npm ci finished\n", encoding="utf-8")
            if result.returncode != 0 or not _installed():
                raise NodeUnavailable(
                    f"`npm ci` in {JS_DIR} failed ({result.returncode}):\n"
                    f"{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
                )
    return JS_DIR


class ClientFailed(AssertionError):
    """The client exited, or the expected line did not come within the bound."""


class NodeClient:
    """One Node client script as a subprocess speaking JSON lines.

    ``lines`` holds every line read so far, in order; :meth:`expect` waits
    for the next matching one (lines already seen count, once each). Wait
    from one thread at a time per client (one client per browser tab or
    connection keeps tests simple anyway).
    """

    def __init__(self, script: str, config: Mapping[str, Any] | None = None) -> None:
        self.script = JS_DIR / script
        if not self.script.is_file():
            raise FileNotFoundError(self.script)
        self.config = dict(config or {})
        self.lines: list[Line] = []
        self._unread: queue.Queue[Line | None] = queue.Queue()
        self._pending: list[Line] = []
        self._workdir = Path(tempfile.mkdtemp(prefix="node-client-"))
        self._stderr_path = self._workdir / "stderr.log"
        self.process: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None
        self._write_lock = threading.Lock()

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> NodeClient:
        """Start the script (installing the npm packages first if needed)."""
        ensure_installed(chromium=bool(self.config.get("chromium")))
        if self.config.get("chromium") is True:
            self.config["chromium"] = str(CHROMIUM)  # the scripts take the executable's path
        env = dict(os.environ)
        env["NODE_NO_WARNINGS"] = "1"
        with self._stderr_path.open("w") as stderr:
            self.process = subprocess.Popen(
                ["node", str(self.script), json.dumps(self.config)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                cwd=JS_DIR,
                env=env,
                text=True,
                bufsize=1,
                start_new_session=True,
            )
        self._reader = threading.Thread(target=self._read, name=f"read {self.script.name}")
        self._reader.daemon = True
        self._reader.start()
        return self

    def _read(self) -> None:
        process = self.process
        assert process is not None and process.stdout is not None
        try:
            for raw in process.stdout:
                text = raw.strip()
                if not text:
                    continue
                try:
                    line = json.loads(text)
                except ValueError:
                    line = {"type": "stdout", "text": text}
                if not isinstance(line, dict):
                    line = {"type": "stdout", "value": line}
                self.lines.append(line)
                self._unread.put(line)
        except (ValueError, OSError):
            # close() closed the pipe while this thread was still reading the script's last
            # lines: the end of the output, as far as anyone still listens
            if not process.stdout.closed:
                raise
        finally:
            self._unread.put(None)  # end of output

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        return self.process is not None and self.process.poll() is None

    def close(self, timeout: float = 5) -> None:
        """Ask the script to stop (``{"cmd": "close"}``), then terminate its group."""
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(OSError, ValueError):
                assert process.stdin is not None
                process.stdin.write(json.dumps({"cmd": "close"}) + "\n")
                process.stdin.flush()
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(process.pid, signal.SIGKILL)
                    process.wait(timeout=5)
        for stream in (process.stdin, process.stdout):
            with contextlib.suppress(OSError, ValueError):
                if stream is not None:
                    stream.close()
        if self._reader is not None:
            self._reader.join(timeout=5)
        shutil.rmtree(self._workdir, ignore_errors=True)

    def __enter__(self) -> NodeClient:
        return self.start() if self.process is None else self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- talking to it ---------------------------------------------------------------

    def send(self, command: Mapping[str, Any]) -> None:
        """Write one JSON command line to the script's stdin."""
        process = self.process
        if process is None or process.stdin is None:
            raise ClientFailed(f"{self.script.name} is not running")
        with self._write_lock:
            process.stdin.write(json.dumps(dict(command)) + "\n")
            process.stdin.flush()

    def stderr(self) -> str:
        """What the script wrote on stderr so far (the last 4000 characters)."""
        try:
            return self._stderr_path.read_text(encoding="utf-8", errors="replace")[-4000:]
        except OSError:
            return ""

    @staticmethod
    def _matcher(kind: str | None, fields: Mapping[str, Any]) -> Callable[[Line], bool]:
        def matches(line: Line) -> bool:
            if kind is not None and line.get("type") != kind:
                return False
            return all(line.get(k) == v for k, v in fields.items())

        return matches

    def expect(
        self,
        kind: str | None = None,
        *,
        timeout: float = 20,
        where: Callable[[Line], bool] | None = None,
        **fields: Any,
    ) -> Line:
        """The next unconsumed line of type ``kind`` whose ``fields`` equal these.

        Lines that do not match stay available for later calls. Raises
        :class:`ClientFailed` when the script exits first, or after
        ``timeout`` seconds (a failure bound, not a pace).
        """
        match = self._matcher(kind, fields)

        def ok(line: Line) -> bool:
            return match(line) and (where is None or where(line))

        for i, line in enumerate(self._pending):
            if ok(line):
                return self._pending.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._fail(f"no {kind or 'line'} {fields or ''} within {timeout} s")
            try:
                line = self._unread.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                self._unread.put(None)  # keep the end marker for later calls
                self._fail(f"exited before a {kind or 'line'} {fields or ''}")
            if ok(line):
                return line
            self._pending.append(line)

    async def aexpect(self, kind: str | None = None, *, timeout: float = 20, **fields: Any) -> Line:
        """:meth:`expect` from a coroutine (waits in a worker thread)."""
        return await asyncio.to_thread(self.expect, kind, timeout=timeout, **fields)

    def seen(self, kind: str, **fields: Any) -> list[Line]:
        """Every line read so far of type ``kind`` with these ``fields`` (consumed or not)."""
        match = self._matcher(kind, fields)
        return [line for line in list(self.lines) if match(line)]

    def _fail(self, what: str) -> NoReturn:
        code = None if self.process is None else self.process.poll()
        raise ClientFailed(
            f"{self.script.name}: {what} (exit code {code}); lines: {self.lines[-20:]}\n"
            f"stderr:\n{self.stderr()}"
        )


def node_unavailable(reason: str) -> NoReturn:
    """Skip (or, with CI set, fail) because the Node clients cannot run here."""
    import pytest

    if os.environ.get("CI"):
        pytest.fail(f"the Node.js clients are required in CI: {reason}", pytrace=False)
    pytest.skip(reason)


def require_node(*, chromium: bool = False) -> Path:
    """tests/js, installed; or skip (fail under CI) when the tools are missing."""
    try:
        return ensure_installed(chromium=chromium)
    except NodeUnavailable as exc:
        node_unavailable(str(exc))


#: What the ``clients`` fixtures give a test: start a Node client, get it back.
Start = Callable[..., "NodeClient"]


def start_client(script: str, config: Mapping[str, Any] | None = None) -> NodeClient:
    """A started :class:`NodeClient`, or skip/fail (pytest) if Node cannot run here.

    ``config["chromium"] = True`` also requires Chromium (the script then gets
    its path in ``config["chromium"]``). Use it as a context
    manager (or call :meth:`NodeClient.close`) to stop the script.
    """
    client = NodeClient(script, config)
    require_node(chromium=bool(client.config.get("chromium")))
    return client.start()


@contextlib.contextmanager
def headless_chromium() -> Iterator[NodeClient]:
    """A headless Chromium (playwright-core, tests/js/frontend_browser.mjs) ready for pages,
    closed on leaving the block."""
    browser = start_client("frontend_browser.mjs", {"chromium": True})
    try:
        browser.expect("ready", timeout=60)
        yield browser
    finally:
        browser.close()
