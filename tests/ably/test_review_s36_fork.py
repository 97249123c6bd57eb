"""The driver's record of revoked client ids across ``os.fork()``: a child of a process one
of whose threads was noting a revocation at the fork can still authorize.

The fork is made while a thread holds the record's lock (as one inside ``terminate_user()``
or a token check would), the way a pre-forking server forks a busy parent.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from broadcasting_ably._auth import REVOKED

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fork"))

from forking import fork_while_held

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork() only"),
    pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning"),
]


def test_a_child_forked_while_the_revocation_record_was_locked_can_use_it() -> None:
    REVOKED.note("appid.keyid", "7")

    def child() -> bool:
        # what it inherited is kept: the parent's revocations still hold here
        kept = REVOKED.at("appid.keyid", "7") is not None
        REVOKED.note("appid.keyid", "8")
        return kept

    assert fork_while_held(REVOKED._lock, child) == 0
    assert REVOKED.at("appid.keyid", "8") is None  # the child's note stayed in the child
