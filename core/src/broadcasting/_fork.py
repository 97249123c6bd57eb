"""Per-process state does not survive ``os.fork()``: the one place that resets it in a child.

A forked child has a single thread, the one that forked. A lock another thread of the parent
held stays held in the child for good, and the parent's pools, loops and kept-alive
connections are not the child's to use (a pre-forking server's ``--preload`` forks a process
that already published). Two ways to say what a child starts afresh, both run in every child
``os.fork()`` makes, never in the parent, and not at all where there is no
``os.register_at_fork`` (Windows, which has no fork):

- :func:`in_forked_child` decorates a module's function that resets the module's own state
  (renews a lock, forgets a pool). Each runs in the order the modules registered them.
- :func:`call_after_fork` names an object whose ``_after_fork()`` the child calls, while the
  object lives: one collected before the fork is not called, nor kept alive by this.
"""

from __future__ import annotations

# The standard library's own resets (logging's locks, random's new seed) run first: an
# object's _after_fork() may log, or draw its random choice (a node to start from) afresh.
import logging  # noqa: F401
import os
import random  # noqa: F401
import weakref
from collections.abc import Callable
from typing import Protocol, TypeVar

Reset = TypeVar("Reset", bound=Callable[[], object])


class AfterFork(Protocol):
    """An object a forked child resets (:func:`call_after_fork`)."""

    def _after_fork(self) -> None: ...


def in_forked_child(reset: Reset) -> Reset:
    """Decorator: run ``reset()`` in every child ``os.fork()`` makes (not on Windows).

    For state of the module's own: a module-level lock (``global _lock; _lock =
    threading.Lock()``), a pool or loop thread of the parent's to forget. An error it raises
    is reported (``sys.unraisablehook``) and the other resets still run."""
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=reset)
    return reset


# by id, not by hash: an object need not be hashable, and two equal ones are both reset
_objects: weakref.WeakValueDictionary[int, AfterFork] = weakref.WeakValueDictionary()


def call_after_fork(obj: AfterFork) -> None:
    """In every child ``os.fork()`` makes while ``obj`` lives, call ``obj._after_fork()``.

    Call it from ``__init__``: ``_after_fork()`` then gives the object fresh locks and lets
    go of what belongs to the parent (its connections, never closed nor written on: they
    are the parent's too). Holds ``obj`` weakly; calling it again for the same object adds
    nothing, so a subclass's ``__init__`` may call it as its base class's does (its
    ``_after_fork()`` calls ``super()._after_fork()``). A TypeError, at once, for an object
    without a ``_after_fork()`` method (else every child would report it missing)."""
    if not callable(getattr(obj, "_after_fork", None)):
        raise TypeError(
            f"call_after_fork() needs an object with an _after_fork() method, not a "
            f"{type(obj).__module__}.{type(obj).__qualname__}"
        )
    _objects[id(obj)] = obj


@in_forked_child
def _reset_objects() -> None:
    """Every live object's ``_after_fork()``: one that raises does not keep the others from
    theirs; the first error is raised at the end (reported as any at-fork hook's is)."""
    first: BaseException | None = None
    for obj in list(_objects.values()):
        try:
            obj._after_fork()
        except BaseException as exc:
            first = first or exc
    if first is not None:
        raise first


__all__ = ["AfterFork", "call_after_fork", "in_forked_child"]
