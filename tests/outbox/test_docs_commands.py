"""Every ``broadcasting ...`` command docs/background.md shows (the shell lines, the systemd
unit's ExecStart, the Kubernetes container's command) is one the command line accepts, and
the unit and the manifest hold what the page says they do."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from broadcasting import cli

PAGE = Path(__file__).resolve().parents[2] / "docs" / "background.md"
TEXT = PAGE.read_text(encoding="utf-8")


def _block(name: str) -> str:
    found = re.search(rf"<!-- snippet: {name} -->\s*```\w+\n(.*?)^```", TEXT, re.S | re.M)
    assert found, name
    return found.group(1)


def _commands() -> list[list[str]]:
    """Each command line of the page that runs ``broadcasting``, as argv (without it)."""
    lines: list[list[str]] = []
    for code in re.findall(r"^```(?:console|sh)\n(.*?)^```", TEXT, re.S | re.M):
        for line in code.splitlines():
            line = line.removeprefix("$ ").split("#", 1)[0].strip()
            if line.startswith("broadcasting "):
                lines.append(shlex.split(line)[1:])
    unit = _block("relay-systemd")
    [start] = [x for x in unit.splitlines() if x.startswith("ExecStart=")]
    lines.append(shlex.split(start.split("=", 1)[1])[1:])
    manifest = _block("relay-kubernetes")
    [command] = re.findall(r"command: \[(.*)\]", manifest)
    lines.append([part.strip().strip('"') for part in command.split(",")][1:])
    return lines


COMMANDS = _commands()


def test_the_page_shows_the_relay_and_outbox_commands() -> None:
    shown = {argv[0] if argv[0] != "outbox" else f"outbox {argv[1]}" for argv in COMMANDS}
    assert {"relay", "outbox list", "outbox retry", "outbox purge"} <= shown


@pytest.mark.parametrize("argv", COMMANDS, ids=[" ".join(a) for a in COMMANDS])
def test_each_command_parses(argv: list[str]) -> None:
    args = cli._parser().parse_args(argv)  # argparse exits (SystemExit) on a bad one
    assert callable(args.run)
    assert args.config == "config/broadcast.py"


def test_the_service_stops_with_sigterm_and_restarts() -> None:
    unit = _block("relay-systemd")
    assert "KillSignal=SIGTERM" in unit and "Restart=always" in unit
    manifest = _block("relay-kubernetes")  # Kubernetes stops a pod with SIGTERM too
    assert "kind: Deployment" in manifest and "terminationGracePeriodSeconds" in manifest
