"""Review (session 36) of the relay as an operator runs it: ``broadcasting relay`` started as
the systemd unit of docs/background.md starts it (the console script, the unit's arguments,
a bare environment, no terminal), sent signals, with its database or its service (a real
soketi) gone, and what it logs and exits with."""

from __future__ import annotations

import json
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

from relay_process import RelayProcess
from soketi_pytest import running_soketi
from soketi_server import SoketiServer, refused_port

from broadcasting import Broadcast
from broadcasting.outbox import store_for

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


class Service(RelayProcess):
    """``broadcasting relay`` run as the unit runs it, its stderr (the journal) in a file."""

    def __init__(self, workdir: Path, config: dict[str, Any], name: str = "relay") -> None:
        (workdir / "config").mkdir(exist_ok=True)
        (workdir / "config" / "broadcast.py").write_text(
            "\n".join(f"{key} = {value!r}" for key, value in config.items()) + "\n",
            encoding="utf-8",
        )
        super().__init__(exec_start(workdir), workdir, name, service_env())


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


# -- the service down, then back ------------------------------------------------------------


@pytest.fixture
def soketi() -> Iterator[SoketiServer]:
    """A soketi of this test's own: the test stops and starts it."""
    yield from running_soketi()


def test_a_service_outage_is_one_warning_line_and_its_end_one_info_line(
    services: Callable[..., Service], soketi: SoketiServer, tmp_path: Path
) -> None:
    outbox = {"url": f"sqlite:///{tmp_path / 'outbox.sqlite3'}", "partitions": 4}
    config = {"DRIVER": "pusher", "DRIVERS": {"pusher": soketi.driver_options()}, "OUTBOX": outbox}
    soketi.stop()
    relay = services(config)
    relay.wait_for(lambda said: "started" in said)
    with Broadcast(config) as broadcast:
        for n in range(8):  # several channels, partitions and rounds: each row backs off
            broadcast.channel(f"orders.{n}", {"n": n}, "shipped", send="outbox")
        relay.wait_for(lambda said: "failed" in said)
        time.sleep(4)  # attempts go on: 0.5 s, 1 s, 2 s apart...
        soketi.start()
        relay.wait_for(lambda said: "works again" in said)
        deadline = time.monotonic() + 30
        while store_for(broadcast).stats(time.time()).backlog["delivered"] < 8:
            assert time.monotonic() < deadline, relay.log()
            time.sleep(0.1)
    assert relay.stop() == 0
    said = relay.log()
    # the operator's journal: one line when the service went away (what failed, and that
    # the rows wait), one when it came back; no traceback, no line per row or attempt
    failing = [line for line in said.splitlines() if "WARNING" in line]
    assert len(failing) == 1, said
    assert "publishing through pusher failed" in failing[0]
    assert "Connection refused" in failing[0] or "could not reach" in failing[0], failing[0]
    assert "rows wait" in failing[0]
    assert len([line for line in said.splitlines() if "works again" in line]) == 1, said
    assert tracebacks(said) == []
    assert soketi.secret not in said


# -- signals ----------------------------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_a_stop_signal_ends_the_relay_cleanly_its_leases_given_back(
    services: Callable[..., Service], tmp_path: Path, signum: int
) -> None:
    """SIGTERM (systemd, Kubernetes), Ctrl-C, and SIGHUP (the terminal or SSH session it was
    started from closing): the rows out finish, the leases are given back at once (so the
    next relay need not wait out the lease, and no row is left ``sending``), exit 0."""
    outbox = {"url": f"sqlite:///{tmp_path / 'outbox.sqlite3'}", "partitions": 4}
    config = {"DRIVER": "memory", "DRIVERS": {"memory": {}}, "OUTBOX": outbox}
    relay = services(config)
    with Broadcast(config) as broadcast:
        store = store_for(broadcast)
        relay.wait_for(lambda said: "started" in said)
        deadline = time.monotonic() + 20
        while sum(map(len, store.stats(time.time()).relays.values())) < 4:  # all held
            assert time.monotonic() < deadline, relay.log()
            time.sleep(0.05)
        assert relay.stop(signum) == 0, relay.log()
        stats = store.stats(time.time())
        assert stats.relays == {}  # given back: no lease to wait out
        assert sorted(store.claim("next", time.time(), 30)) == [0, 1, 2, 3]
    said = relay.log()
    assert said.rstrip().endswith("stopped"), said
    assert tracebacks(said) == []


# -- a relay whose own configuration is wrong --------------------------------------------------


def test_a_relay_that_cannot_build_a_configured_driver_exits_1_leaving_the_rows(
    services: Callable[..., Service], tmp_path: Path
) -> None:
    """The writers' configuration is right, the relay's (another host, another image) lacks
    the Pusher secret: the relay exits 1 with one line (systemd shows the unit failed), and
    the rows wait for a relay that can send them; it made each of them dead."""
    outbox = {"url": f"sqlite:///{tmp_path / 'outbox.sqlite3'}", "partitions": 4}
    good = {"app_id": "1", "key": "app-key", "secret": PASSWORD, "host": "127.0.0.1"}
    good["port"] = refused_port()
    writer = {"DRIVER": "pusher", "DRIVERS": {"pusher": good}, "OUTBOX": outbox}
    with Broadcast(writer) as broadcast:
        broadcast.channel("orders", {"id": 1}, "shipped", send="outbox")
        lacking = {key: value for key, value in good.items() if key != "secret"}
        relay = services({**writer, "DRIVERS": {"pusher": lacking}})
        status = relay.process.wait(15)
        backlog = store_for(broadcast).stats(time.time()).backlog
    said = relay.log()
    assert status == 1, said
    assert said.strip().splitlines() == [
        "broadcasting: error: ConfigurationError: Configuration error in the 'pusher' driver, "
        "key 'secret': is required (the app secret)"
    ]
    assert backlog["pending"] == 1 and backlog["dead"] == 0


# -- the documented unit and manifest ----------------------------------------------------------


def test_the_unit_pulls_in_the_network_it_waits_for() -> None:
    """systemd.special(7): After=network-online.target orders the relay after the network
    only if something pulls that target in; a unit needing it adds Wants= too."""
    settings = unit()
    assert "network-online.target" in settings["After"].split()
    assert "network-online.target" in settings.get("Wants", "").split()


def test_the_manifest_runs_the_relay_with_no_probe_and_says_why() -> None:
    manifest = _block("relay-kubernetes")  # (no YAML parser among the test requirements)
    [command] = re.findall(r"^ +command: (\[.*\])$", manifest, re.M)
    assert json.loads(command)[:2] == ["broadcasting", "relay"]
    assert "Probe" not in manifest
    text = " ".join(PAGE.read_text(encoding="utf-8").split())
    assert "Do not make `broadcasting check` its probe" in text


# -- outbox list, purge -----------------------------------------------------------------------


def dead_rows(tmp_path: Path, count: int) -> str:
    """A config file whose SQLite outbox holds ``count`` dead rows and one delivered row."""
    import sqlite3

    from broadcasting.outbox._row import DEAD, DELIVERED

    outbox = {"url": f"sqlite:///{tmp_path / 'outbox.sqlite3'}", "partitions": 4}
    config = {"DRIVER": "memory", "DRIVERS": {"memory": {}}, "OUTBOX": outbox}
    path = tmp_path / "broadcast.py"
    path.write_text(f"OUTBOX = {outbox!r}\nDRIVER = 'memory'\n", encoding="utf-8")
    with Broadcast(config) as broadcast:
        for n in range(count + 1):
            broadcast.channel(f"orders.{n}", {"n": n}, "shipped", send="outbox")
        table = store_for(broadcast).table
    with sqlite3.connect(tmp_path / "outbox.sqlite3") as db:
        db.execute(f"UPDATE {table} SET state = ?, done_at = 0", (DEAD,))
        db.execute(f"UPDATE {table} SET state = ? WHERE id = 1", (DELIVERED,))
    return str(path)


def test_outbox_list_says_when_it_shows_only_the_first_rows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from broadcasting.cli import main

    config = dead_rows(tmp_path, 5)
    assert main(["outbox", "list", "--limit", "3", "--config", config]) == 0
    out, err = capsys.readouterr()
    assert len(out.splitlines()) == 3
    assert "the first 3 dead rows; there are more" in err
    assert main(["outbox", "list", "--limit", "3", "--json", "--config", config]) == 0
    out, err = capsys.readouterr()
    assert len(json.loads(out)) == 3 and "there are more" in err  # stdout stays JSON
    assert main(["outbox", "list", "--limit", "5", "--config", config]) == 0
    out, err = capsys.readouterr()
    assert len(out.splitlines()) == 5 and err == ""  # all of them: nothing to say


def test_outbox_purge_deletes_delivered_rows_only_as_the_page_says(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from broadcasting.cli import main

    config = dead_rows(tmp_path, 3)
    assert main(["outbox", "purge", "--before", "0", "--config", config]) == 0
    assert capsys.readouterr().out == "1 delivered row(s) deleted\n"
    assert main(["relay", "--stats", "--json", "--config", config]) == 0
    backlog = json.loads(capsys.readouterr().out)["backlog"]
    assert backlog["dead"] == 3 and backlog["delivered"] == 0
    text = " ".join(PAGE.read_text(encoding="utf-8").split())
    assert "It deletes no dead or unknown row" in text


def test_the_page_warns_against_one_owner_name_for_several_relays() -> None:
    """Two ``broadcasting relay --owner twin`` at once (tried on this review: 81 of 3,000
    rows ended unknown) share one name's leases; the page says to leave it out or vary it."""
    text = " ".join(PAGE.read_text(encoding="utf-8").split())
    assert "leave `--owner` out of a command that starts several relays" in text


def test_the_unit_environment_and_working_directory_as_the_page_says(
    services: Callable[..., Service], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The documented unit, run as systemd runs it: a config that reads the README's
    variables exits 1 without them (systemd passes none of the shell's); the default SQLite
    outbox is the file in WorkingDirectory, the one an application run there writes."""
    (tmp_path / "config").mkdir()
    path = tmp_path / "config" / "broadcast.py"
    path.write_text(
        'import os\nDRIVER = "memory"\nDRIVERS = {"memory": {}}\n'
        'SEND = "outbox"\nKEY = os.environ["PUSHER_KEY"]\n',
        encoding="utf-8",
    )
    done = subprocess.run(
        exec_start(tmp_path), cwd=tmp_path, env=service_env(), capture_output=True, text=True
    )
    assert done.returncode == 1
    assert "KeyError" in done.stderr and len(done.stderr.splitlines()) == 1
    monkeypatch.chdir(tmp_path)  # the application, run from the same folder
    with Broadcast({"DRIVER": "memory", "DRIVERS": {"memory": {}}, "SEND": "outbox"}) as app:
        app.channel("orders", {"id": 1}, "shipped")
        store = store_for(app)
        relay = services({"DRIVER": "memory", "DRIVERS": {"memory": {}}, "SEND": "outbox"})
        deadline = time.monotonic() + 30
        while store.stats(time.time()).backlog["delivered"] < 1:
            assert time.monotonic() < deadline, relay.log()
            time.sleep(0.05)
    assert (tmp_path / "broadcasting-outbox.sqlite3").exists()
    assert relay.stop() == 0
    text = " ".join(PAGE.read_text(encoding="utf-8").split())
    assert "needs an `Environment=` or `EnvironmentFile=` line" in text


def test_a_service_that_flaps_is_not_a_warning_per_flap(
    soketi: SoketiServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Down, up, down again within a minute: one WARNING, one INFO (a service failing now
    and then, a 429 say, must not write two lines per row to the journal)."""
    import logging

    from broadcasting.outbox import Relay
    from broadcasting.outbox._policy import Backoff

    outbox = {"url": f"sqlite:///{tmp_path / 'outbox.sqlite3'}", "partitions": 1}
    config = {"DRIVER": "pusher", "DRIVERS": {"pusher": soketi.driver_options()}, "OUTBOX": outbox}
    with Broadcast(config) as broadcast, caplog.at_level(logging.INFO, "broadcasting.outbox"):
        relay = Relay(broadcast, owner="flapping", backoff=Backoff(0.01, 0.01))
        for n in range(3):
            soketi.stop()
            broadcast.channel("orders", {"n": n}, "shipped", send="outbox")
            assert relay.run_once().retried == 1
            soketi.start()
            time.sleep(0.05)
            assert relay.run_once().delivered == 1
        relay.store.release(relay.owner)
    said = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert [level for level, _ in said] == ["WARNING", "INFO"], said
