"""The `broadcasting` command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from broadcasting.cli import main


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "broadcasting", *args], capture_output=True, text=True, timeout=60
    )


def test_drivers_lists_name_package_version_module(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["drivers"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["NAME", "PACKAGE", "VERSION", "MODULE"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert rows["memory"][1:] == [
        "broadcasting",
        rows["memory"][2],
        "broadcasting.drivers.memory:BroadcastMemoryDriver",
    ]


def test_drivers_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["drivers", "--json"]) == 0
    infos = {d["name"]: d for d in json.loads(capsys.readouterr().out)}
    assert infos["log"]["distribution"] == "broadcasting"
    assert infos["log"]["module"] == "broadcasting.drivers.log:BroadcastLogDriver"
    assert set(infos["null"]) == {"name", "distribution", "version", "module"}


def test_send_on_the_default_log_driver_prints_the_message_and_the_receipt() -> None:
    result = run("send", '{"order": 42}', "--channel", "orders", "--event", "shipped")
    assert result.returncode == 0, result.stderr
    assert "broadcasting: broadcast 'shipped' on orders: {\"order\":42}" in result.stderr
    assert result.stdout.startswith("sent: log: 'shipped' -> orders (id ")


def test_send_json_array_and_plain_text(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "broadcast.py"
    config.write_text("DRIVER = 'null'\n")
    assert main(["send", "[1, 2]", "-c", "a", "-c", "b", "--config", str(config), "--json"]) == 0
    receipt = json.loads(capsys.readouterr().out)
    assert (receipt["driver"], receipt["channels"], receipt["event"]) == (
        "null",
        ["a", "b"],
        "base-event",
    )
    # "42" parses as JSON but is not an object or array: it is sent as the string "42"
    result = run("send", "42", "-c", "a", "--driver", "log")
    assert "on a: 42" in result.stderr


def test_errors_exit_non_zero_with_one_line_and_no_traceback() -> None:
    result = run("send", "hi", "--channel", "a", "--driver", "pigeon-post")
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0
    assert "Traceback" not in result.stderr
    assert "DriverNotFoundError" in result.stderr and "'pigeon-post'" in result.stderr
    assert "pip install" not in result.stderr  # not a package this project publishes
    result = run("send", "hi", "--channel", "")
    assert result.returncode == 1
    assert "InvalidChannelError" in result.stderr and "Traceback" not in result.stderr
