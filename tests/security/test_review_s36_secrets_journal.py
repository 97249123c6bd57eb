"""A journal's Redis URL that redis-py cannot read is refused quoting none of it.

redis-py reads ``redis://user:pa/ss@host`` (a password with an unencoded ``/``, ``?`` or
``#``) as host ``user``, port ``pa``, and raised ``ValueError: Port could not be cast to
integer value as 'pa'``: the start of the password, in the message, with the whole URL in
the locals of ``RedisJournal.__init__`` and ``_redis_client`` (whose half-made journal's repr
raised, too). Now it is a ConfigurationError that names the fix and holds neither. No Redis
is needed: nothing connects.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "servers"))
from secret_scan import showing

from broadcasting import ConfigurationError
from broadcasting.contrib._queue import RedisJournal

SECRET = "s36jr-Pw"


@pytest.mark.parametrize("mark", ["/", "?", "#"])
@pytest.mark.parametrize("user", ["", "worker"])
def test_a_url_split_inside_the_password_is_refused_quoting_nothing(mark: str, user: str) -> None:
    url = f"redis://{user}:{SECRET}{mark}tail@127.0.0.1:6379/0"
    with pytest.raises(ConfigurationError, match="percent-encode") as info:
        RedisJournal(url)
    assert showing(info.value, SECRET, skip=__file__) == []
    assert info.value.__cause__ is None and info.value.__context__ is None


def test_an_encoded_password_is_read() -> None:
    journal = RedisJournal(f"redis://worker:{SECRET}%2Ftail@127.0.0.1:6379/0")
    kwargs = journal.client.connection_pool.connection_kwargs
    assert kwargs["password"] == f"{SECRET}/tail" and kwargs["host"] == "127.0.0.1"
    assert SECRET not in repr(journal)
    journal.client.close()
