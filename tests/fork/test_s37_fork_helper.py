"""The one fork-reset helper (``broadcasting._fork``, in ``broadcasting.plugin`` for drivers).

Real ``os.fork()`` children (``forking.py``): each runs its check and sends back what it saw.
The locks are held by a real thread of the parent at the fork (forking.fork_while_held), as a
threaded application that forks catches them; a child sees they are free without waiting.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import textwrap
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import forking
import pytest

from broadcasting import _fork, plugin

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork() only"),
    pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning"),
]

ROOT = Path(__file__).resolve().parents[2]

#: what this module's objects' and module resets did in a child (empty in the parent)
calls: list[str] = []
_lock = threading.Lock()  # renewed in a child by _renew_lock


@_fork.in_forked_child
def _renew_lock() -> None:
    global _lock
    _lock = threading.Lock()
    calls.append("module")


class Tracked:
    """Records its reset; holds a lock and a 'connection' of the parent's, as a pool does."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.lock = threading.Lock()
        self.connections = [f"{name}'s parent connection"]
        _fork.call_after_fork(self)

    def _after_fork(self) -> None:
        self.lock = threading.Lock()
        self.connections = []
        calls.append(self.name)


class Unhashable(Tracked):
    """Equal to every other, and unhashable: still tracked one by one."""

    __hash__ = None  # type: ignore[assignment]

    def __eq__(self, other: object) -> bool:
        return True


class Failing(Tracked):
    def _after_fork(self) -> None:
        calls.append(self.name)
        raise RuntimeError("this reset fails")


@contextmanager
def holding(*locks: Any) -> Iterator[None]:
    """All of ``locks``, for :func:`forking.fork_while_held` (which holds them in a thread)."""
    with ExitStack() as stack:
        for lock in locks:
            stack.enter_context(lock)
        yield


def in_child(work: Callable[[], Any]) -> Any:
    return forking.result(forking.fork(work))


def test_a_forked_child_gets_fresh_state_and_the_parent_keeps_its_own() -> None:
    tracked = Tracked("tracked")
    parent_lock, parent_object_lock = _lock, tracked.lock

    def child() -> bool:
        return (
            sorted(c for c in calls if c in ("module", "tracked")) == ["module", "tracked"]
            and _lock.acquire(blocking=False)  # free: not the lock the parent's thread held
            and tracked.lock.acquire(blocking=False)
            and tracked.connections == []
        )

    assert forking.fork_while_held(holding(_lock, tracked.lock), child) == 0
    # the parent's own state: the same locks, its connection, nothing reset
    assert _lock is parent_lock and tracked.lock is parent_object_lock
    assert calls == [] and tracked.connections == ["tracked's parent connection"]


def test_an_object_collected_before_the_fork_is_not_called_nor_kept() -> None:
    kept, gone = Tracked("kept"), Tracked("gone")
    ref = weakref.ref(gone)
    del gone
    gc.collect()
    assert ref() is None, "call_after_fork() kept the object alive"

    seen = in_child(lambda: [c for c in calls if c in ("kept", "gone")])
    assert seen == ["kept"]
    assert kept.name == "kept"


def test_equal_and_unhashable_objects_are_each_reset_once() -> None:
    one, other = Unhashable("one"), Unhashable("other")
    _fork.call_after_fork(one)  # again, as a subclass's __init__ after its base class's
    seen = in_child(lambda: sorted(c for c in calls if c in ("one", "other")))
    assert seen == ["one", "other"]
    assert one == other


def test_a_failing_reset_is_reported_and_the_others_still_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reported: list[str] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: reported.append(repr(u.exc_value)))
    failing = [Failing(f"failing {i}") for i in range(3)]
    healthy = [Tracked(f"healthy {i}") for i in range(3)]

    def child() -> dict[str, Any]:
        return {
            "calls": sorted(c for c in calls if c[:-2] in ("failing", "healthy")),
            "reported": reported,
        }

    seen = in_child(child)
    assert seen["calls"] == sorted(o.name for o in [*failing, *healthy])
    assert seen["reported"] == ["RuntimeError('this reset fails')"]


def run_fresh(code: str) -> str:
    """Run ``code`` in a new interpreter (this checkout's venv); its stdout."""
    argv = [sys.executable, "-c", textwrap.dedent(code)]
    return subprocess.check_output(argv, text=True, timeout=120, cwd=ROOT).strip()


def test_the_random_module_is_reseeded_before_the_objects_reset() -> None:
    """An object's reset that draws a random choice (the pusher driver's first node) draws
    from the child's new seed: the objects' resets run after the standard library's, even
    when ``broadcasting`` is what first imports ``random`` (a new process, as here)."""
    said = run_fresh(
        """
        import json, os, sys
        import broadcasting
        from broadcasting.plugin import call_after_fork

        class Draws:
            def _after_fork(self):
                import random
                self.drawn = random.random()

        draws = Draws()
        call_after_fork(draws)
        drawn = []
        for _ in range(2):
            read, write = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.write(write, json.dumps(draws.drawn).encode())
                os._exit(0)
            os.close(write)
            drawn.append(json.loads(os.read(read, 100)))
            os.waitpid(pid, 0)
        print(json.dumps(drawn))
        """
    )
    first, second = json.loads(said)
    assert first != second, "both children drew the parent's next random number"


def test_without_register_at_fork_nothing_is_registered_and_all_imports() -> None:
    """Windows has no ``os.fork`` nor ``os.register_at_fork``: the core and the drivers
    import and make their objects; the decorator gives the function back unchanged."""
    said = run_fresh(
        """
        import os
        del os.register_at_fork, os.fork
        import broadcasting, broadcasting.outbox, broadcasting.contrib.celery
        import broadcasting.contrib.django._broadcast
        import broadcasting_pusher, broadcasting_ably
        from broadcasting import Broadcast
        from broadcasting.plugin import call_after_fork, in_forked_child

        def reset():
            pass

        assert in_forked_child(reset) is reset
        config = {"DRIVER": "pusher", "DRIVERS": {"pusher": {
            "app_id": "1", "key": "key", "secret": "secret", "host": "127.0.0.1"}}}
        with Broadcast(config) as broadcast:
            broadcast.driver()
        print("ok")
        """
    )
    assert said == "ok"


# -- a third-party driver's module ------------------------------------------------------------

THIRD_PARTY = '''
"""A driver package of someone else's: it imports from broadcasting.plugin only."""

import threading

from broadcasting.plugin import call_after_fork, in_forked_child

_tokens_lock = threading.Lock()
_inherited = []


@in_forked_child
def _renew_lock():
    global _tokens_lock
    _tokens_lock = threading.Lock()


class Pool:
    def __init__(self):
        self._lock = threading.Lock()
        self._idle = ["a kept-alive connection"]
        call_after_fork(self)

    def _after_fork(self):
        self._lock = threading.Lock()
        _inherited.extend(self._idle)
        self._idle = []
'''


def test_a_third_party_driver_module_resets_through_the_plugin_api(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert {"call_after_fork", "in_forked_child"} <= set(plugin.__all__)
    (tmp_path / "acme_fork_driver.py").write_text(THIRD_PARTY)
    monkeypatch.syspath_prepend(str(tmp_path))
    import acme_fork_driver as acme  # type: ignore[import-not-found]

    pool = acme.Pool()

    def child() -> bool:
        return bool(
            acme._tokens_lock.acquire(blocking=False)
            and pool._lock.acquire(blocking=False)
            and pool._idle == []
            and acme._inherited == ["a kept-alive connection"]
        )

    assert forking.fork_while_held(holding(acme._tokens_lock, pool._lock), child) == 0
    assert pool._idle == ["a kept-alive connection"] and acme._inherited == []
