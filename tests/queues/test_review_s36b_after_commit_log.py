"""A publish sent after its transaction committed, that not every channel acknowledged, is
logged at ERROR with what became of each channel.

The log said "failed" for a publish of which some channels were delivered and the others
may have been (an answer that left them out): nothing had certainly failed, and the channels
that may have arrived were not named as such. It now says ``delivered on a; unknown on b``.
The publish goes to the HTTPS Ably emulator, whose answer leaves a channel out; the
transaction is SQLAlchemy's, on SQLite.
"""

from __future__ import annotations

import logging
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

TESTS = Path(__file__).resolve().parents[1]
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from broadcasting import Broadcast, PublishError  # noqa: E402
from servers.ably_emulator import TEST_KEY, AblyEmulator  # noqa: E402


@pytest.fixture(scope="module")
def emulator_server() -> Iterator[AblyEmulator]:
    with AblyEmulator() as server:
        yield server


def test_a_committed_publish_partly_delivered_is_logged_channel_by_channel(
    emulator_server: AblyEmulator,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    emulator_server.reset()
    monkeypatch.setenv("SSL_CERT_FILE", emulator_server.ca_path)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    options = emulator_server.options(retries=0)
    tag = uuid.uuid4().hex[:8]
    sent, left_out = f"sent-{tag}", f"left-out-{tag}"
    engine = create_engine("sqlite://")
    emulator_server.forget_channels_next([left_out])  # stored, but not in the answer
    with (
        Broadcast({"DRIVER": "ably", "DRIVERS": {"ably": options}}) as broadcast,
        caplog.at_level(logging.ERROR, "broadcasting.background"),
        Session(engine) as session,
        session.begin(),  # committed first, on the way out: then sent
    ):
        session.execute(text("SELECT 1"))
        receipt = broadcast.channel(
            [sent, left_out], {"id": 1}, "shipped", send="after_commit", transaction=session
        )
    (record,) = [r for r in caplog.records if r.name == "broadcasting.background"]
    said = record.getMessage()
    assert f"message {receipt.message_id}" in said
    assert f"sent after commit, delivered on {sent}; unknown on {left_out}:" in said, said
    assert "failed" not in said.partition(": ")[2].partition(":")[0]
    assert TEST_KEY.partition(":")[2] not in caplog.text  # the key's secret half
    assert len(emulator_server.messages(sent)) == 1


def test_each_outcome_is_named_and_long_lists_are_cut() -> None:
    from broadcasting._background import Cancelled, _outcomes

    error = PublishError(
        "mixed", driver="x", delivered=["a"], failed=["b"], unknown=["c"], maybe_delivered=True
    )
    assert _outcomes(["a", "b", "c"], error) == "delivered on a; failed on b; unknown on c"
    # channels the error does not name: as its maybe_delivered says
    assert _outcomes(["a", "b"], PublishError("x", driver="x")) == "failed on a, b"
    lost = PublishError("x", driver="x", maybe_delivered=True)
    assert _outcomes(["a"], lost) == "unknown on a"
    assert _outcomes(["a"], Cancelled("stopped")) == "unknown on a"
    many = [f"c{n}" for n in range(12)]
    assert _outcomes(many, PublishError("x", driver="x", failed=many)).endswith("c9 and 2 more")
