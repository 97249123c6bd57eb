"""``broadcasting relay`` and ``broadcasting outbox`` (broadcasting.outbox._cli) on a real
SQLite outbox file, through the subcommands' own parser."""

from __future__ import annotations

import json
from argparse import ArgumentParser
from pathlib import Path
from typing import Any

import pytest

from broadcasting import Broadcast
from broadcasting.outbox._cli import add_commands
from broadcasting.outbox._row import DEAD, DELIVERED, PENDING
from broadcasting.outbox._store import Store


def cli(*argv: str) -> int:
    parser = ArgumentParser(prog="broadcasting")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    status: int = args.run(args)
    return status


@pytest.fixture
def settings(tmp_path: Path) -> dict[str, Any]:
    outbox = {"url": f"sqlite:///{tmp_path / 'outbox.sqlite3'}", "partitions": 4}
    return {"DRIVER": "memory", "DRIVERS": {"memory": {}}, "OUTBOX": outbox}


@pytest.fixture
def path(tmp_path: Path, settings: dict[str, Any]) -> str:
    file = tmp_path / "broadcasting.json"
    file.write_text(json.dumps(settings), encoding="utf-8")
    return str(file)


def store_of(settings: dict[str, Any]) -> Store:
    return Store.from_config(settings["OUTBOX"])


def write(settings: dict[str, Any], *, dead: int, good: int) -> None:
    """``good`` rows for the memory driver; ``dead`` for a driver the relay's config lacks
    (pusher: written here with options, which the relay's config does not have)."""
    pusher = {"app_id": "1", "client": "key", "secret": "not-sent", "host": "127.0.0.1"}
    with Broadcast({**settings, "DRIVERS": {"memory": {}, "pusher": pusher}}) as broadcast:
        for n in range(good):
            broadcast.channel("orders", {"n": n}, "tick", send="outbox")
        for n in range(dead):
            broadcast.driver("pusher").channel("audit", {"n": n}, "tick", send="outbox")


def test_init_creates_the_tables(path: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli("outbox", "init", "--config", path) == 0
    assert "broadcasting_outbox" in capsys.readouterr().out
    assert cli("outbox", "init", "--config", path) == 0  # again: nothing to do


def test_a_round_lists_retries_and_purges(
    path: str, settings: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    write(settings, dead=2, good=3)
    assert cli("relay", "--once", "--json", "--config", path, "--owner", "cli-relay") == 0
    done = json.loads(capsys.readouterr().out)
    assert (done["delivered"], done["dead"], done["fetched"]) == (3, 2, 5)

    assert cli("outbox", "list", "--state", "dead", "--config", path) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and all("pusher" in line and "audit" in line for line in lines)
    assert all("ConfigurationError" in line for line in lines)
    assert all("not-sent" not in line for line in lines)

    assert cli("outbox", "list", "--state", "dead", "--json", "--config", path) == 0
    dead = json.loads(capsys.readouterr().out)
    assert [row["state"] for row in dead] == [DEAD, DEAD]

    assert cli("relay", "--stats", "--json", "--config", path) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["backlog"]["dead"] == 2 and stats["backlog"]["delivered"] == 3

    assert cli("outbox", "retry", str(dead[0]["id"]), "--config", path) == 0
    assert capsys.readouterr().out.startswith("1 row")
    assert cli("outbox", "retry", "--all-dead", "--config", path) == 0
    assert capsys.readouterr().out.startswith("1 row")
    store = store_of(settings)
    assert len(store.rows(PENDING, 10)) == 2

    assert cli("outbox", "purge", "--before", "0", "--config", path) == 0
    assert capsys.readouterr().out.startswith("3 delivered row")
    assert store.rows(DELIVERED, 10) == []
    store.close()


def test_listing_nothing_says_so(path: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli("outbox", "init", "--config", path) == 0  # list makes no SQLite file
    assert cli("outbox", "list", "--state", "unknown", "--config", path) == 0
    assert "no unknown rows" in capsys.readouterr().err


def test_retry_needs_ids_or_all_dead(path: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli("outbox", "retry", "--config", path) == 2
    assert "--all-dead" in capsys.readouterr().err


def test_purge_refuses_a_negative_age(path: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli("outbox", "purge", "--before", "-1", "--config", path) == 2
    assert ">= 0" in capsys.readouterr().err


def test_stats_as_text(path: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli("outbox", "init", "--config", path) == 0  # --stats makes no SQLite file
    assert cli("relay", "--stats", "--config", path) == 0
    out = capsys.readouterr().out
    assert "backlog:" in out and "partitions: 4" in out


def test_a_database_failure_is_one_line_without_its_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outbox = {
        "url": "postgresql://postgres:pw-not-shown@127.0.0.1:5432/test",
        "table": "no_such_outbox_relay_cli",
    }
    file = tmp_path / "broadcasting.json"
    file.write_text(json.dumps({"DRIVER": "memory", "OUTBOX": outbox}), encoding="utf-8")
    assert cli("relay", "--stats", "--config", str(file)) == 1
    assert cli("outbox", "list", "--config", str(file)) == 1
    err = capsys.readouterr().err
    # the table is missing (not the database down): said so, with what makes it
    assert "'no_such_outbox_relay_cli" in err and "does not exist" in err
    assert "`broadcasting outbox init`" in err and len(err.splitlines()) == 2
    assert "pw-not-shown" not in err


def test_a_relay_deletes_delivered_rows_past_retention(settings: dict[str, Any]) -> None:
    from broadcasting.outbox._relay import Relay

    kept = {**settings, "OUTBOX": {**settings["OUTBOX"], "retention": 0}}
    write(settings, dead=0, good=3)
    with Broadcast(kept) as broadcast:
        assert Relay(broadcast, owner="one").run_once().delivered == 3
        store = Relay(broadcast, owner="two").store
        assert len(store.rows(DELIVERED, 10)) == 3
        Relay(broadcast, owner="two").run_once()  # deletes them as it starts
        assert store.rows(DELIVERED, 10) == []
