"""Helpers of the outbox operations tests (``broadcasting outbox ...`` and the stores they
act on): the CLI run in process, a config file naming an outbox, and rows put in given
states."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from broadcasting import cli
from broadcasting.outbox import _sql
from broadcasting.outbox._row import NewRow
from broadcasting.outbox._store import Store


def main(*argv: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``broadcasting ARGV``: its status, stdout and stderr (an argparse refusal: 2)."""
    try:
        status = cli.main(list(argv))
    except SystemExit as exc:
        status = int(exc.code or 0)
    out, err = capsys.readouterr()
    return status, out, err


def config_file(tmp_path: Path, outbox: dict[str, Any]) -> str:
    """A JSON config in ``tmp_path`` whose publishes go to ``outbox`` (the memory driver)."""
    path = tmp_path / f"broadcasting-{uuid.uuid4().hex[:6]}.json"
    config = {"DRIVER": "memory", "DRIVERS": {"memory": {}}, "SEND": "outbox", "OUTBOX": outbox}
    path.write_text(json.dumps(config), encoding="utf-8")
    return str(path)


def set_states(store: Store, states: list[int]) -> list[int]:
    """Rows in ``store``, one in each of ``states`` (in that order): their ids."""
    now = time.time()
    rows = [
        NewRow(0, now, now, "memory", "e", ("orders",), '"x"', "json", None, uuid.uuid4().hex)
        for _ in states
    ]
    store.insert(rows)
    with store._transaction(write=True) as run:
        ids = [int(i) for (i,) in run(f"SELECT id FROM {_sql._q(store.table)} ORDER BY id")]
        ids = ids[-len(states) :]
        for row_id, state in zip(ids, states, strict=True):
            run(f"UPDATE {_sql._q(store.table)} SET state = ? WHERE id = ?", state, row_id)
    return ids


def states_of(store: Store) -> dict[int, int]:
    """Every row of ``store``: its id and state."""
    with store._transaction(write=False) as run:
        return {int(i): int(s) for i, s in run(f"SELECT id, state FROM {_sql._q(store.table)}")}
