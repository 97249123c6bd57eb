"""A secret given as bytes lay as bytes in a ``Config`` (review h8): ``Config`` sealed every
string, nested ones too, but kept ``bytes`` as it was, so anything that walked the object (an
error tracker recording the locals of any frame that holds the ``Broadcast``) found the key.
Bytes are sealed as strings are, and read back as the very object given."""

from __future__ import annotations

from typing import Any

import pytest

from broadcasting import Broadcast
from broadcasting._config import load_config
from broadcasting.testing._suite.leaks import holders

KEY = b"h8-raw-key-bytes-5e1d"

OPTIONS: dict[str, Any] = {
    "secret": KEY,
    "signing": {"key": bytearray(KEY), "algorithm": "sha256"},
    "keys": [KEY, b"other"],
}


@pytest.mark.parametrize("key", sorted(OPTIONS))
def test_bytes_are_sealed_at_rest(key: str) -> None:
    config = load_config({"DRIVER": "x", "DRIVERS": {"x": {key: OPTIONS[key]}}})
    assert holders(config, [KEY], "config") == []


def test_they_read_back_as_given() -> None:
    config = load_config({"DRIVER": "x", "DRIVERS": {"x": OPTIONS}})
    read = config.options("x")
    assert read["secret"] is KEY
    assert read["signing"]["key"] is OPTIONS["signing"]["key"]
    assert read["keys"] == [KEY, b"other"] and read["keys"][0] is KEY


def test_a_broadcast_refusing_a_bytes_secret_holds_it_nowhere() -> None:
    """The pusher driver wants text: its error names the key, and neither the error's frames
    nor the Broadcast hold the bytes."""
    broadcast = Broadcast(
        {
            "DRIVER": "pusher",
            "DRIVERS": {"pusher": {"app_id": "1", "client": "k", "secret": KEY}},
        }
    )
    with pytest.raises(Exception) as caught:
        broadcast.driver("pusher")
    assert "secret" in str(caught.value) and KEY.decode() not in str(caught.value)
    assert holders(broadcast, [KEY], "broadcast") == []
    broadcast.close()
