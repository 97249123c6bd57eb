"""An RQ worker finds its queue plugin in the Broadcast its jobs name, among plugins of every
kind: one that cannot be hashed too (pluggy's get_plugins() makes a set of them)."""

from __future__ import annotations

import sys
from types import SimpleNamespace

import pytest
import redis
import rq

from broadcasting import Broadcast
from broadcasting.contrib import rq as contrib_rq
from broadcasting.contrib.rq import RQQueue


def test_the_worker_finds_its_plugin_beside_one_that_cannot_be_hashed(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue = rq.Queue("bq-lookup", connection=redis.Redis.from_url(redis_url))
    plugin = RQQueue(queue, f"{__name__}:made")
    made = Broadcast({"DRIVER": "memory"}, plugins=[SimpleNamespace(), plugin])
    # what the job's target names
    monkeypatch.setattr(sys.modules[__name__], "made", made, raising=False)
    try:
        assert contrib_rq._plugin(f"{__name__}:made", "rq") is plugin
    finally:
        contrib_rq._found.pop((f"{__name__}:made", "rq"), None)
        made.close()
