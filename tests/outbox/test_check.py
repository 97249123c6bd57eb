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


def test_a_sqlite_file_that_is_not_there_fails_the_check_and_is_not_made(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # a mistyped path: the check says so (and what makes the file), not "empty" on a new file
    path = tmp_path / "typo.sqlite3"
    config = _config(tmp_path, f"sqlite:///{path}")
    assert cli.main(["check", "--config", str(config)]) == 1
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("outbox"))
    assert line.split()[1] == "error"
    assert "OutboxFileMissing" in line and "does not exist" in line and "outbox init" in line
    assert not path.exists()
    assert cli.main(["outbox", "init", "--config", str(config)]) == 0
    assert cli.main(["check", "--config", str(config)]) == 0
    capsys.readouterr()


def test_rows_in_partitions_no_relay_reads_fail_the_check_and_the_relay_warns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """Writers given more ``partitions`` than the relays write rows that no relay reads, and
    nothing said so: they waited for ever. The stats count them, ``check`` fails on them, and
    a relay warns as it starts."""
    import threading

    from broadcasting.outbox import Relay
    from broadcasting.outbox._row import partition_of

    url = f"sqlite:///{tmp_path / 'outbox.sqlite3'}"
    channels = [f"orders.{n}" for n in range(40)]
    beyond = sum(1 for channel in channels if partition_of(channel, 32) >= 16)
    assert 0 < beyond < len(channels)
    writer = Broadcast({"DRIVER": "memory", "OUTBOX": {"url": url, "partitions": 32}})
    with writer:
        for channel in channels:
            writer.channel(channel, "x", "e", send="outbox")
        store_for(writer).close()
    config = _config(tmp_path, url)  # the relays' configuration: 16 partitions, the default
    assert cli.main(["check", "--config", str(config)]) == 1
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("outbox"))
    assert line.split()[1] == "error"
    assert f"{beyond} rows to send in partitions no relay reads (16 or more)" in line
    with Broadcast(str(config)) as broadcast:
        relay = Relay(broadcast)
        assert relay.store.stats(0).stranded == beyond
        stop = threading.Timer(1.0, relay.stop)
        stop.start()
        relay.run()
        stop.join()
        [warning] = [r for r in caplog.records if "no relay reads" in r.getMessage()]
        assert warning.levelname == "WARNING"
        assert relay.store.stats(0).stranded == beyond  # still there: nobody read them
        relay.store.close()
