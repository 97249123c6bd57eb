"""What the fork tests' web apps share: a module-level Broadcast, the events, the hold.

The apps are configured by the test through the environment:

* ``FORK_CONFIG``: the ``Broadcast`` config (JSON);
* ``FORK_CHANNEL``: the channel every event goes to;
* ``FORK_HOLD_DIR`` and ``FORK_WORKERS``: see :func:`hold`.

Every event says which process published it and why: ``{"pid": ..., "kind":
"import"}`` once when the module is imported, ``{"pid": ..., "kind":
"request", "n": ...}`` for the test's request number ``n``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from broadcasting import Broadcast, Receipt

CONFIG: dict[str, Any] = json.loads(os.environ["FORK_CONFIG"])
CHANNEL = os.environ["FORK_CHANNEL"]
HOLD_DIR = Path(os.environ["FORK_HOLD_DIR"])
WORKERS = int(os.environ["FORK_WORKERS"])
#: The longest a worker waits in :func:`hold` for the others (seconds).
HOLD_LIMIT = 20.0

#: Made at import: in ``gunicorn --preload`` that is the master, before it forks the workers.
broadcast = Broadcast(CONFIG)
IMPORTED_BY = os.getpid()


def event(kind: str, n: int = 0) -> dict[str, Any]:
    """The data of one published event."""
    return {"pid": os.getpid(), "kind": kind, "n": n}


def hold() -> None:
    """Keep this worker busy until every worker is in here too (at most HOLD_LIMIT s).

    A worker that holds a request cannot take another one (a sync worker
    serves one at a time; an async app's worker is held by blocking its event
    loop here, on purpose). So when the test sends its next request only once
    this worker's file appeared, that request goes to another worker: the
    test reaches every worker with as many requests as there are workers.
    """
    (HOLD_DIR / str(os.getpid())).touch()
    deadline = time.monotonic() + HOLD_LIMIT
    while len(list(HOLD_DIR.iterdir())) < WORKERS and time.monotonic() < deadline:
        time.sleep(0.01)


def answer(receipt: Receipt, import_receipt: Receipt, **extra: Any) -> bytes:
    """The JSON a request is answered with."""
    return json.dumps(
        {
            "pid": os.getpid(),
            "message_id": receipt.message_id,
            "import_message_id": import_receipt.message_id,
            "imported_by": IMPORTED_BY,
            **extra,
        }
    ).encode()


def query(raw: bytes | str) -> dict[str, str]:
    """``n=3&hold=1`` -> ``{"n": "3", "hold": "1"}``."""
    text = raw.decode() if isinstance(raw, bytes) else raw
    return dict(part.split("=", 1) for part in text.split("&") if "=" in part)
