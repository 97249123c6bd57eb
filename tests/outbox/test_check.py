"""``broadcasting check`` reports the outbox next to the drivers: its backlog, lag and relays,
and ``error`` (exit status 1) when it cannot be read; real SQLite files and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from broadcasting import Broadcast, cli
from broadcasting.outbox import store_for


def _config(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "broadcast.py"
    path.write_text(f"DRIVER = 'memory'\nSEND = 'outbox'\nOUTBOX = {{'url': {url!r}}}\n")
    return path


def test_check_shows_the_backlog(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'outbox.sqlite3'}"
    config = _config(tmp_path, url)
    with Broadcast(str(config)) as broadcast:
        broadcast.channel("orders", "a")  # SEND = "outbox": two rows wait for a relay
        broadcast.channel("orders", "b")
        store_for(broadcast).close()
    assert cli.main(["check", "--config", str(config)]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("outbox"))
    assert line.split()[1] == "ok"
    assert "2 pending; lag " in line and "0 relays running" in line
    assert cli.main(["check", "--config", str(config), "--json"]) == 0
    [outbox] = [item for item in json.loads(capsys.readouterr().out) if item.get("outbox")]
    assert outbox["backlog"]["pending"] == 2 and outbox["relays"] == 0


def test_an_outbox_that_cannot_be_read_fails_the_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # a PostgreSQL database without the outbox's tables (nobody ran `outbox init`)
    config = _config(tmp_path, "postgresql://postgres:pw-not-shown@127.0.0.1:5432/test")
    config.write_text(config.read_text() + "OUTBOX['table'] = 'no_such_outbox_x'\n")
    assert cli.main(["check", "--config", str(config)]) == 1
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("outbox"))
    assert line.split()[1] == "error"
    assert "pw-not-shown" not in out
