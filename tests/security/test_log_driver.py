"""Issue 17, item 10: a message cannot forge log lines through the ``log`` driver.

Control characters (C0, DEL, C1 with NEL among them, and the Unicode line and
paragraph separators) in the message text, a channel name or the event name
are written as escapes, on the logging path and on the stderr fallback: one
publish, one record, one line. Ordinary text, non-ASCII letters included,
reads as it was sent.
"""

from __future__ import annotations

import io
import logging
import re
import subprocess
import sys
from collections.abc import Iterator

import pytest

from broadcasting import Broadcast

FORGED = "2026-12-04 10:00:00 WARNING django.security: admin login from 10.0.0.1"

#: Every character that ends or rewrites a line somewhere (str.splitlines(), a
#: terminal, a log shipper): C0, DEL, C1 (NEL, CSI...), LS, PS.
BREAKERS = [chr(c) for c in (*range(0x20), 0x7F, *range(0x80, 0xA0), 0x2028, 0x2029)]
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")

#: Text a log line must keep as it is.
READABLE = "café Ærø 日本語 Ελληνικά עברית 😀 tab-free, quotes ' \" and a \\ backslash"


@pytest.fixture
def captured() -> Iterator[tuple[Broadcast, io.StringIO]]:
    """A log driver on its own logger, written through a real handler and formatter."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("forge-test")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        with Broadcast({"DRIVER": "log", "DRIVERS": {"log": {"logger": "forge-test"}}}) as b:
            yield b, stream
    finally:
        logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)
        logger.propagate = True


def _lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def test_a_newline_in_the_message_does_not_make_a_second_line(
    captured: tuple[Broadcast, io.StringIO],
) -> None:
    broadcast, stream = captured
    broadcast.channel("orders", f"hi\n{FORGED}", "shipped")
    lines = _lines(stream)
    assert len(lines) == 1, lines
    assert lines[0] == f"INFO forge-test: broadcast 'shipped' on orders: hi\\n{FORGED}"


@pytest.mark.parametrize("char", BREAKERS, ids=lambda c: f"U+{ord(c):04X}")
@pytest.mark.parametrize("where", ["text", "channel", "event"])
def test_every_control_character_is_escaped(
    captured: tuple[Broadcast, io.StringIO], char: str, where: str
) -> None:
    broadcast, stream = captured
    forged = f"x{char}{FORGED}"
    if where == "text":
        broadcast.channel("orders", forged, "shipped")
    elif where == "channel":
        broadcast.channel(["orders", forged], "hi", "shipped")
    else:
        broadcast.channel("orders", "hi", forged)
    out = stream.getvalue()
    assert out.count("\n") == 1 and out.endswith("\n"), repr(out)
    line = out[:-1]
    assert not _UNSAFE.search(line), repr(line)
    assert len(line.splitlines()) == 1
    assert FORGED in line  # still there to read, on the same line


def test_a_record_carries_no_control_character(caplog: pytest.LogCaptureFixture) -> None:
    """What a handler gets (record.getMessage()) is one line too, not only a formatted one."""
    caplog.set_level(logging.INFO, logger="broadcasting")
    with Broadcast({"DRIVER": "log"}) as broadcast:
        broadcast.channel(["a\u2028b", "c\x85d"], "e\r\nf\x1b[2J", "ev\u2029t")
    (record,) = [r for r in caplog.records if r.name == "broadcasting"]
    message = record.getMessage()
    assert not _UNSAFE.search(message), repr(message)
    assert message == "broadcast 'ev\\u2029t' on a\\u2028b, c\\x85d: e\\r\\nf\\x1b[2J"


def test_ordinary_text_stays_readable(captured: tuple[Broadcast, io.StringIO]) -> None:
    broadcast, stream = captured
    broadcast.channel("nouvelles", READABLE, "publié")
    broadcast.channel("orders", {"name": "Zoë", "note": "ok"}, "shipped")
    assert _lines(stream) == [
        f"INFO forge-test: broadcast 'publié' on nouvelles: {READABLE}",
        'INFO forge-test: broadcast \'shipped\' on orders: {"name":"Zoë","note":"ok"}',
    ]


def test_json_data_with_a_newline_is_one_line_already(
    captured: tuple[Broadcast, io.StringIO],
) -> None:
    """JSON escapes a newline itself; a U+2028 it leaves raw, the driver escapes."""
    broadcast, stream = captured
    broadcast.channel("orders", {"note": f"a\n{FORGED}", "ls": "b\u2028c"}, "shipped")
    (line,) = _lines(stream)
    assert not _UNSAFE.search(line)
    assert '"ls":"b\\u2028c"' in line


def test_the_stderr_fallback_escapes_too(capsys: pytest.CaptureFixture[str]) -> None:
    """With no handler anywhere on the logger's path, the line goes to stderr: one line."""
    logger = logging.getLogger("forge-test-bare")
    logger.propagate = False  # no handler here nor on the way up: the fallback
    try:
        with Broadcast({"DRIVER": "log", "DRIVERS": {"log": {"logger": "forge-test-bare"}}}) as b:
            b.channel(["orders\nx"], f"hi\r\n{FORGED}\u2028{READABLE}", "ship\x85ped")
    finally:
        logger.propagate = True
    err = capsys.readouterr().err
    assert err.count("\n") == 1, repr(err)
    assert not _UNSAFE.search(err[:-1])
    assert err == (
        f"forge-test-bare: broadcast 'ship\\x85ped' on orders\\nx: "
        f"hi\\r\\n{FORGED}\\u2028{READABLE}\n"
    )


def test_the_stderr_fallback_of_a_bare_script() -> None:
    """A first script, as a user runs it: logging never configured at all."""
    script = (
        "from broadcasting import Broadcast\n"
        f"Broadcast().channel('orders', 'hi\\n' + {FORGED!r} + '\\u2028x', 'shipped')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        encoding="utf-8",
        env={"PYTHONIOENCODING": "utf-8", "PATH": ""},
        timeout=60,
        check=True,
    )
    assert done.stderr == f"broadcasting: broadcast 'shipped' on orders: hi\\n{FORGED}\\u2028x\n"


def test_a_hook_that_rewrites_the_message_cannot_forge_lines_either(
    captured: tuple[Broadcast, io.StringIO],
) -> None:
    """A wrapper may change the message after validation; the driver still writes one line."""
    from broadcasting.plugin import Message, hookimpl

    class Rewriter:
        @hookimpl(wrapper=True)
        def broadcasting_publish(self, driver: object, message: Message) -> object:
            message.event = f"x\n{FORGED}"
            message.channels = ("a\nb",)
            message.data = f"y\n{FORGED}"
            return (yield)

    broadcast, stream = captured
    broadcast.plugin_manager.register(Rewriter())
    broadcast.channel("orders", "hi", "shipped")
    assert len(_lines(stream)) == 1
