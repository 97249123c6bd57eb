"""A new user's reading of the documentation: claims that the code or another page
contradicted, each checked against what the code does.

- docs/cli.md said ``broadcasting check``'s outbox row is ``error`` only when the outbox
  cannot be read, and listed its JSON keys without ``stranded``: since rows in partitions
  no relay reads fail the check (commit 05b49e1), the page left that error unexplained.
- docs/cli.md said every command that connects a driver takes ``--driver NAME``:
  ``broadcasting relay --driver pusher`` is an argparse error.
- docs/scaling.md said de-duplicating on ``event.id`` drops "a delivery soketi sent
  again", where webhooks.md and frontend.md (and soketi's code) say soketi never retries.
- examples/django_orders/README.md put the ``member_added`` handler in orders/views.py;
  it is in orders/broadcasting.py, where the app finds it.
- docs/publishing.md, "the reference for sending events", showed ``channel()`` without
  its ``send=`` and ``transaction=`` keywords.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest

from broadcasting import Broadcast, cli

ROOT = Path(__file__).resolve().parent.parent
CLI = ROOT / "docs" / "cli.md"


def run_cli(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        try:
            status = cli.main(list(argv))
        except SystemExit as exit:  # argparse's refusal
            status = int(exit.code or 0)
    return status, out.getvalue()


def outbox_row(config: Path) -> tuple[int, dict[str, Any]]:
    status, out = run_cli("check", "--json", "--config", str(config))
    [row] = [row for row in json.loads(out) if row.get("outbox")]
    return status, row


def test_cli_md_says_what_checks_outbox_row_holds_and_when_stranded_rows_fail_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path / 'outbox.sqlite3'}"
    writer = {"DRIVER": "memory", "OUTBOX": {"url": url, "partitions": 8}}
    relays = tmp_path / "relays.json"
    relays.write_text(json.dumps({"DRIVER": "memory", "OUTBOX": {"url": url, "partitions": 8}}))

    assert run_cli("outbox", "init", "--config", str(relays))[0] == 0  # check makes no file
    status, row = outbox_row(relays)
    assert (status, row["status"]) == (0, "ok")
    healthy = set(row)

    with Broadcast(writer) as broadcast:  # rows in every one of the 8 partitions
        for n in range(64):
            broadcast.channel(f"orders.{n}", "x", send="outbox")
    relays.write_text(json.dumps({"DRIVER": "memory", "OUTBOX": {"url": url, "partitions": 1}}))
    status, row = outbox_row(relays)
    assert (status, row["status"]) == (1, "error")
    assert row["stranded"] > 0 and "no relay reads" in row["detail"]

    text = " ".join(CLI.read_text(encoding="utf-8").split())
    section = text[text.index("When the configuration uses the outbox") :]
    section = section[: section.index("## ")]
    listed, _, rest = section.partition("--json` adds `")[2].partition("}`")
    documented = set(re.findall(r'"(\w+)"', listed))
    assert documented == healthy, "cli.md lists the keys of a healthy outbox's row"
    assert set(row) - healthy == {"stranded"}
    assert '`"stranded"`' in rest, "cli.md names the key a stranded outbox adds"
    assert "no relay reads" in section, "cli.md says stranded rows make the row an error"


def test_the_commands_cli_md_says_take_driver_take_it() -> None:
    text = " ".join(CLI.read_text(encoding="utf-8").split())
    sentence = text[text.index("Each command that connects a driver") :]
    sentence = sentence[: sentence.index("Errors print one line")]
    before = sentence.split("also take `--driver NAME`")[0]
    named = re.findall(r"`(\w+)`", before[before.index("(configuration.md)") :])
    assert set(named) == {"send", "check", "channels", "members", "listen"}
    for command, extra in {
        "send": ["x", "--channel", "c"],
        "check": [],
        "channels": [],
        "members": ["presence-x"],
        "listen": ["c"],
    }.items():
        args = cli._parser().parse_args([command, *extra, "--driver", "memory"])
        assert args.driver in ("memory", ["memory"])
    # the one that connects drivers without the option, as the page now says
    status, _ = run_cli("relay", "--once", "--driver", "memory")
    assert status == 2
    assert "`relay`" in sentence


def test_scaling_md_agrees_that_soketi_never_resends_a_webhook() -> None:
    """webhooks.md and frontend.md say soketi sends each delivery once; scaling.md agrees."""
    sender = ROOT / "tests/servers/soketi/node_modules/@soketi/soketi/dist/webhook-sender.js"
    if sender.is_file():  # soketi's own code: nothing in its sender retries
        assert not re.search(r"retr(y|ies)", sender.read_text(encoding="utf-8"), re.I)
    pages = {
        name: " ".join((ROOT / "docs" / name).read_text(encoding="utf-8").split())
        for name in ("webhooks.md", "frontend.md", "scaling.md")
    }
    assert "soketi sends each webhook once and does not retry" in pages["webhooks.md"]
    assert "soketi sends each delivery once, without retrying" in pages["frontend.md"]
    assert "soketi sent again" not in pages["scaling.md"]
    assert "soketi itself never retries" in pages["scaling.md"]


def test_django_orders_readme_names_the_file_of_its_webhook_handler() -> None:
    example = ROOT / "examples" / "django_orders"
    readme = (example / "README.md").read_text(encoding="utf-8")
    items = re.split(r"^- ", readme[readme.index("## What is where") :], flags=re.M)[1:]
    [described] = [item for item in items if "BoardVisit" in item]
    [path] = re.findall(r"^\[([\w/]+\.py)\]", described)
    source = (example / path).read_text(encoding="utf-8")
    assert '@broadcast.on_webhook("member_added")' in source
    assert "BoardVisit.objects.get_or_create" in source


def test_publishing_md_shows_every_keyword_of_channel() -> None:
    text = (ROOT / "docs" / "publishing.md").read_text(encoding="utf-8")
    block = text[text.index("```text\nbroadcast.channel(") :]
    block = block[: block.index("```\n", 8)]
    shown = set(re.findall(r"(\w+)=", block))
    for method in (Broadcast.channel, Broadcast.achannel):
        keywords = {
            name
            for name, parameter in inspect.signature(method).parameters.items()
            if parameter.default is not inspect.Parameter.empty
        }
        assert keywords == shown
    for keyword in shown:
        assert f"`{keyword}`" in text[text.index("```text") : text.index("### The Masonite")]


# -- the browser clients and the soketi the pages name are those the tests run -----------------


def _pinned(package_json: Path, name: str) -> str:
    return str(json.loads(package_json.read_text(encoding="utf-8"))["dependencies"][name])


def _pages() -> dict[str, str]:
    files = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    files += sorted(ROOT.glob("plugins/*/README.md")) + sorted(ROOT.glob("examples/*/README.md"))
    for suffix in ("py", "html", "js"):  # the examples' CDN URLs
        files += sorted(ROOT.glob(f"examples/*/*/*.{suffix}"))
        files += sorted(ROOT.glob(f"examples/*/*/static/**/*.{suffix}"))
        files += sorted(ROOT.glob(f"examples/*/*/templates/**/*.{suffix}"))
    return {f.relative_to(ROOT).as_posix(): f.read_text(encoding="utf-8") for f in files}


def test_the_client_and_server_versions_the_pages_name_are_those_tested() -> None:
    """pusher-js, Laravel Echo, ably (under Ably's Echo connector) and soketi, wherever a page
    or an example names a version, are the versions tests/js and tests/servers/soketi pin."""
    clients = ROOT / "tests" / "js" / "package.json"
    pinned = {
        "pusher-js": _pinned(clients, "pusher-js"),
        "laravel-echo": _pinned(clients, "laravel-echo"),
        "Laravel Echo": _pinned(clients, "laravel-echo"),
        "soketi": _pinned(ROOT / "tests" / "servers" / "soketi" / "package.json", "@soketi/soketi"),
    }
    connector_ably = _pinned(clients, "ably-v1").removeprefix("npm:ably@")
    assert _pinned(ROOT / "examples/shop/soketi/package.json", "@soketi/soketi") == pinned["soketi"]
    found = 0
    version = r"(\d+(?:\.\d+)*)\b"
    for page, text in _pages().items():
        for name, tested in pinned.items():
            for named in re.findall(rf"{re.escape(name)}[@ :]v?{version}", text):
                found += 1
                assert tested == named or tested.startswith(named + "."), (page, name, named)
        for named in re.findall(rf"(?:ably@|ably-js ){version}", text):  # the connector's
            found += 1
            assert connector_ably.split(".")[0] == named, (page, named)
    assert found >= 15


# -- the command lines the pages show ---------------------------------------------------------

_PREFIXES = (
    "broadcasting ",
    "python -m broadcasting ",
    "python manage.py broadcasting ",
    "flask --app shop broadcasting ",
)


def shown_command_lines() -> list[tuple[str, str]]:
    """Each ``broadcasting ...`` line of a shell block, less the synopses (``[--json]``)."""
    lines = []
    for page, text in _pages().items():
        if not page.endswith(".md"):
            continue
        for block in re.findall(r"^```(?:sh|console|bash)\n(.*?)^```", text, re.M | re.S):
            for line in block.splitlines():
                line = line.strip().removeprefix("$ ")
                command = line.split("#")[0]
                if line.startswith(_PREFIXES) and not re.search(r"\[|\||\.\.\.", command):
                    lines.append((page, line))
    return lines


def test_every_command_line_the_pages_show_parses() -> None:
    """The README's, cli.md's, webhooks.md's, background.md's, django.md's and flask.md's
    ``broadcasting`` lines take only options the command has (a user copies them)."""
    lines = shown_command_lines()
    assert {page for page, _ in lines} >= {
        "README.md",
        "docs/cli.md",
        "docs/webhooks.md",
        "docs/background.md",
        "docs/django.md",
        "docs/flask.md",
    }
    for page, line in lines:
        argv = shlex.split(line, comments=True)
        argv = argv[argv.index("broadcasting") + 1 :]
        if argv[-1:] == ["&"]:
            argv.pop()
        try:
            cli._parser().parse_args(argv)
        except SystemExit:
            pytest.fail(f"{page}: {line!r} does not parse")
