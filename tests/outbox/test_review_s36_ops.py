"""Review (session 36) of the relay as an operator runs it: ``broadcasting relay`` started as
the systemd unit of docs/background.md starts it (the console script, the unit's arguments,
a bare environment, no terminal), sent signals, with its database or its service (a real
soketi) gone, and what it logs and exits with."""

from __future__ import annotations

import re
import shlex
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "servers"))

from soketi_server import refused_port

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "background.md"
#: the console script next to this Python, as the unit's ExecStart names it
SCRIPT = Path(sys.executable).parent / "broadcasting"
PASSWORD = "pw-" + uuid.uuid4().hex[:12]


def _block(name: str) -> str:
    text = PAGE.read_text(encoding="utf-8")
    found = re.search(rf"<!-- snippet: {name} -->\s*```\w+\n(.*?)^```", text, re.S | re.M)
    assert found, name
    return found.group(1)


def unit() -> dict[str, str]:
    """The [Service] and [Unit] settings of the documented systemd unit."""
    settings: dict[str, str] = {}
    for line in _block("relay-systemd").splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            settings[key.strip()] = value.strip()
    return settings


def exec_start(workdir: Path) -> list[str]:
    """The unit's ExecStart as argv, with the unit's /srv/shop made ``workdir`` and its
    venv's console script this one's."""
    settings = unit()
    argv = shlex.split(settings["ExecStart"])
    assert argv[0] == settings["WorkingDirectory"] + "/.venv/bin/broadcasting"
    return [str(SCRIPT), *argv[1:]]


def service_env() -> dict[str, str]:
    """What systemd gives a service: no terminal, a bare environment (no venv activated)."""
    return {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}


class Service:
    """``broadcasting relay`` run as the unit runs it, its stderr (the journal) in a file."""

    def __init__(self, workdir: Path, config: dict[str, Any], name: str = "relay") -> None:
        (workdir / "config").mkdir(exist_ok=True)
        (workdir / "config" / "broadcast.py").write_text(
            "\n".join(f"{key} = {value!r}" for key, value in config.items()) + "\n",
            encoding="utf-8",
        )
        self.journal = workdir / f"{name}.log"
        with self.journal.open("wb") as err:
            self.process = subprocess.Popen(
                exec_start(workdir),
                cwd=workdir,
                env=service_env(),
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=err,
                start_new_session=True,
            )

    def log(self) -> str:
        return self.journal.read_text(encoding="utf-8", errors="replace")

    def wait_for(self, check: Callable[[str], bool], seconds: float = 30) -> str:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            said = self.log()
            if check(said):
                return said
            assert self.process.poll() is None, f"the relay exited: {said}"
            time.sleep(0.05)
        raise AssertionError(f"not seen in {seconds} s:\n{self.log()}")

    def stop(self, signum: int = signal.SIGTERM, seconds: float = 30) -> int:
        """Send ``signum``; the exit status (the process is killed if it does not exit)."""
        self.process.send_signal(signum)
        try:
            return self.process.wait(seconds)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Callable[..., Service]]:
    made: list[Service] = []

    def make(config: dict[str, Any], name: str = "relay") -> Service:
        service = Service(tmp_path, config, name)
        made.append(service)
        return service

    yield make
    for service in made:
        service.close()


def tracebacks(said: str) -> list[str]:
    return [line for line in said.splitlines() if line.startswith("Traceback")]


# -- the database gone when the relay stops ---------------------------------------------------


def test_a_relay_stopped_while_its_database_is_down_says_so_in_one_line(
    services: Callable[..., Service],
) -> None:
    url = f"postgresql://postgres:{PASSWORD}@127.0.0.1:{refused_port()}/test"
    relay = services({"DRIVER": "memory", "DRIVERS": {"memory": {}}, "OUTBOX": {"url": url}})
    relay.wait_for(lambda said: "the outbox's database failed" in said)
    assert relay.stop() == 0
    said = relay.log()
    # the leases it could not give back: one line, no traceback (the database being down
    # is expected; the relay already said so), and never the password
    [released] = [line for line in said.splitlines() if "could not release its leases" in line]
    assert "Connection refused" in released or "connection failed" in released, released
    assert tracebacks(said) == [], said
    assert PASSWORD not in said
    assert said.rstrip().endswith("stopped"), said
