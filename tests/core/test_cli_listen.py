"""``broadcasting channels``, ``members`` and ``listen``: real processes against a real soketi.

``listen`` and ``send`` run as two processes of the installed command: the
listener prints what the sender published, and SIGINT (Ctrl-C) ends it with
status 130 and no traceback. The clients that make channels occupied are
Pusher-protocol WebSocket connections (tests/servers/pusher_ws.py). The
memory driver's ``listen`` is tested in process (it hears its own process).
Every wait is on a line or an event; the timeouts only bound a failure.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import io
import json
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "servers"))

from pusher_ws import PusherSubscriber
from soketi_pytest import start_soketi
from soketi_server import APP_KEY, APP_SECRET, SoketiServer

from broadcasting import Broadcast
from broadcasting.cli import INTERRUPTED, listen, main


def command(*args: str) -> list[str]:
    """The ``broadcasting`` command line, as this interpreter runs it."""
    return [sys.executable, "-m", "broadcasting", *args]


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Process:
    """A command whose stdout and stderr lines are read as they come."""

    def __init__(self, *args: str) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(
            command(*args),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            # A shell that starts a run in the background without job control makes it
            # ignore SIGINT, and a child inherits that: the Ctrl-C these tests send would
            # then never arrive. The child gets the default back, as a terminal gives it.
            preexec_fn=_default_sigint
            if signal.getsignal(signal.SIGINT) == signal.SIG_IGN
            else None,
        )
        self.out: queue.Queue[str | None] = queue.Queue()
        self.err_lines: list[str] = []
        self._err: queue.Queue[str | None] = queue.Queue()
        for stream, into in ((self.process.stdout, self.out), (self.process.stderr, self._err)):
            threading.Thread(target=self._pump, args=(stream, into), daemon=True).start()

    @staticmethod
    def _pump(stream: Any, into: queue.Queue[str | None]) -> None:
        for line in stream:
            into.put(line.rstrip("\n"))
        into.put(None)

    def line(self, timeout: float = 20) -> str:
        got = self.out.get(timeout=timeout)
        assert got is not None, f"stdout ended; stderr: {self.stderr_text()}"
        return got

    def wait_stderr(self, text: str, timeout: float = 20) -> str:
        while True:
            got = self._err.get(timeout=timeout)
            assert got is not None, f"stderr ended before {text!r}: {self.err_lines}"
            self.err_lines.append(got)
            if text in got:
                return got

    def stderr_text(self) -> str:
        while True:
            try:
                got = self._err.get(timeout=5)
            except queue.Empty:
                break
            if got is None:
                break
            self.err_lines.append(got)
        return "\n".join(self.err_lines)

    def interrupt(self) -> int:
        self.process.send_signal(signal.SIGINT)
        return self.process.wait(timeout=20)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


@pytest.fixture
def config(soketi: SoketiServer, tmp_path: Path) -> str:
    path = tmp_path / "broadcast.json"
    drivers = {"pusher": soketi.driver_options(), "memory": {}}
    path.write_text(json.dumps({"DRIVER": "pusher", "DRIVERS": drivers}))
    return str(path)


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command(*args), capture_output=True, text=True, timeout=60)


def sign(text: str) -> str:
    return f"{APP_KEY}:" + hmac.new(APP_SECRET.encode(), text.encode(), hashlib.sha256).hexdigest()


@pytest.fixture
async def occupied(soketi: SoketiServer) -> AsyncIterator[None]:
    """Two clients: one on cli-orders, both in presence-cli-room (as ann and bob)."""
    clients = [await PusherSubscriber(soketi.ws_url()).connect() for _ in range(2)]
    await clients[0].subscribe("cli-orders")
    for client, user in zip(clients, ("ann", "bob"), strict=True):
        data = json.dumps({"user_id": user, "user_info": {"name": user.title()}})
        channel = "presence-cli-room"
        future = client._subscribed[channel] = asyncio.get_running_loop().create_future()
        auth = sign(f"{client.socket_id}:{channel}:{data}")
        frame = {"channel": channel, "auth": auth, "channel_data": data}
        await client._ws.send(json.dumps({"event": "pusher:subscribe", "data": frame}))
        await asyncio.wait_for(future, 10)
    yield
    for client in clients:
        await client.close()


@pytest.mark.soketi
async def test_channels_and_members_print_what_soketi_reports(config: str, occupied: None) -> None:
    table = await asyncio.to_thread(run, "channels", "--prefix", "cli-", "--config", config)
    assert table.returncode == 0, table.stderr
    assert table.stdout.split("\n")[0].split() == ["CHANNEL", "SUBSCRIPTIONS", "USERS"]
    assert table.stdout.split("\n")[1].split() == ["cli-orders", "1", "-"]
    listed = await asyncio.to_thread(run, "channels", "--json", "--config", config)
    rows = {row["name"]: row for row in json.loads(listed.stdout)}
    assert rows["presence-cli-room"]["subscription_count"] == 2
    assert rows["cli-orders"]["occupied"] is True
    members = await asyncio.to_thread(run, "members", "presence-cli-room", "--config", config)
    assert members.returncode == 0, members.stderr
    assert [line.split()[0] for line in members.stdout.splitlines()] == ["ID", "ann", "bob"]
    as_json = await asyncio.to_thread(
        run, "members", "presence-cli-room", "--json", "--config", config
    )
    assert json.loads(as_json.stdout) == [{"id": "ann", "info": None}, {"id": "bob", "info": None}]
    empty = await asyncio.to_thread(run, "channels", "--prefix", "nothing-", "--config", config)
    assert (empty.returncode, empty.stdout) == (0, "")
    assert "no occupied channels starting with 'nothing-'" in empty.stderr


@pytest.mark.soketi
def test_listen_prints_what_send_publishes_and_ctrl_c_ends_it_cleanly(config: str) -> None:
    listener = Process("listen", "cli-live", "private-cli-live", "--json", "--config", config)
    try:
        ready = listener.wait_stderr("listening on")
        assert "cli-live, private-cli-live (pusher)" in ready
        sent = run(
            "send", '{"order": 42}', "-c", "cli-live", "-c", "private-cli-live",
            "-e", "shipped", "--config", config,
        )  # fmt: skip
        assert sent.returncode == 0, sent.stderr
        heard = sorted((json.loads(listener.line()) for _ in range(2)), key=lambda r: r["channel"])
        assert [(r["channel"], r["event"], r["data"]) for r in heard] == [
            ("cli-live", "shipped", '{"order":42}'),
            ("private-cli-live", "shipped", '{"order":42}'),
        ]
        assert run("send", "plain text", "-c", "cli-live", "--config", config).returncode == 0
        assert json.loads(listener.line())["data"] == "plain text"
        status = listener.interrupt()
    finally:
        listener.kill()
    errors = listener.stderr_text()
    assert status in (0, INTERRUPTED)
    assert "Traceback" not in errors and APP_SECRET not in errors
    assert listener.out.get(timeout=5) is None  # nothing after the events


@pytest.mark.soketi
def test_listen_without_json_prints_one_readable_line_per_event(config: str) -> None:
    listener = Process("listen", "presence-cli-watch", "--config", config)
    try:
        listener.wait_stderr("listening on")
        assert run("send", "a\nb", "-c", "presence-cli-watch", "--config", config).returncode == 0
        line = listener.line()
        assert line.split("  ")[1:] == ["presence-cli-watch", "base-event", "a\\nb"]
        assert listener.interrupt() in (0, INTERRUPTED)
    finally:
        listener.kill()


def test_listen_on_a_driver_that_cannot_fails_with_one_line(tmp_path: Path) -> None:
    result = run("listen", "orders", "--driver", "log")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "broadcasting: error: NotSupportedError: "
        "The 'log' driver does not support listening to channels."
    )


@pytest.mark.soketi
def test_refused_subscriptions_and_bad_names_fail_with_one_line(
    soketi: SoketiServer, tmp_path: Path
) -> None:
    path = tmp_path / "wrong.json"
    options = soketi.driver_options(secret="not-the-secret")
    path.write_text(json.dumps({"DRIVER": "pusher", "DRIVERS": {"pusher": options}}))
    refused = run("listen", "private-cli-secret", "--config", str(path))
    assert refused.returncode == 1
    assert refused.stderr.startswith("broadcasting: error: BroadcastError: pusher: ")
    assert "refused" in refused.stderr and "not-the-secret" not in refused.stderr
    bad = run("listen", "no spaces", "--config", str(path))
    assert (bad.returncode, bad.stderr.count("\n")) == (1, 1)
    assert "InvalidChannelError" in bad.stderr
    members = run("members", "cli-orders", "--config", str(path))
    assert (members.returncode, "only presence channels" in members.stderr) == (1, True)


async def test_listen_hears_the_memory_drivers_publishes_in_process() -> None:
    heard: asyncio.Queue[str] = asyncio.Queue()

    class Lines(io.StringIO):
        def write(self, text: str) -> int:
            for line in text.splitlines():
                if line:  # print() writes the line, then its end
                    heard.put_nowait(line)
            return len(text)

    with Broadcast({"DRIVER": "memory"}) as broadcast:
        task = asyncio.ensure_future(
            listen(broadcast, ["orders", "presence-room"], as_json=True, out=Lines(), err=Lines())
        )
        ready = await asyncio.wait_for(heard.get(), 5)
        assert ready.startswith("broadcasting: listening on orders, presence-room (memory)")
        await broadcast.achannel(["orders", "presence-room"], {"id": 1}, "shipped")
        first = json.loads(await asyncio.wait_for(heard.get(), 5))
        second = json.loads(await asyncio.wait_for(heard.get(), 5))
        assert (first["channel"], second["channel"]) == ("orders", "presence-room")
        assert first["data"] == '{"id":1}' and first["event"] == "shipped"
        assert [c.name for c in broadcast.occupied_channels()] == ["orders", "presence-room"]
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert broadcast.occupied_channels() == []  # cancelled: it unsubscribed


def test_listen_on_memory_as_a_process_stops_on_ctrl_c() -> None:
    listener = Process("listen", "orders", "--driver", "memory")
    try:
        assert "(memory)" in listener.wait_stderr("listening on")
        status = listener.interrupt()
    finally:
        listener.kill()
    assert status == INTERRUPTED
    assert "Traceback" not in listener.stderr_text()


def test_main_dispatches_the_new_commands_in_process(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["channels", "--driver", "memory", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert main(["members", "presence-room", "--driver", "memory"]) == 0
    assert "nobody is in presence-room" in capsys.readouterr().err
    assert main(["members", "orders", "--driver", "memory"]) == 1
    assert "InvalidChannelError" in capsys.readouterr().err


@pytest.mark.soketi
def test_listen_reports_a_lost_connection_in_one_line(tmp_path: Path) -> None:
    server = start_soketi()
    try:
        path = tmp_path / "own.json"
        path.write_text(
            json.dumps({"DRIVER": "pusher", "DRIVERS": {"pusher": server.driver_options()}})
        )
        listener = Process("listen", "cli-outage", "--config", str(path))
        try:
            listener.wait_stderr("listening on")
            server.stop()  # the service goes away under the listener
            status = listener.process.wait(timeout=30)
        finally:
            listener.kill()
    finally:
        server.close()
    errors = listener.stderr_text()
    assert status == 1, errors
    assert "broadcasting: error: BroadcastError: pusher: " in errors
    assert "Traceback" not in errors


def test_listen_on_pusher_without_aiohttp_says_what_to_install(tmp_path: Path) -> None:
    path = tmp_path / "pusher.json"
    options = {"app_id": "1", "key": "k", "secret": "s", "host": "127.0.0.1", "port": 9}
    path.write_text(json.dumps({"DRIVER": "pusher", "DRIVERS": {"pusher": options}}))
    script = (
        "import sys; sys.modules['aiohttp'] = None\n"  # an interpreter without aiohttp
        "from broadcasting.cli import main\n"
        f"sys.exit(main(['listen', 'orders', '--config', {str(path)!r}]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert "NotSupportedError" in result.stderr
    assert "pip install 'broadcasting-pusher[aiohttp]'" in result.stderr
    assert "Traceback" not in result.stderr
