"""The pluggy markers for the ``broadcasting`` project."""

from __future__ import annotations

import pluggy

PROJECT = "broadcasting"

#: Marks a function as a hook specification (used only by :mod:`broadcasting.hookspecs`).
hookspec = pluggy.HookspecMarker(PROJECT)
#: Marks a function as an implementation of a ``broadcasting`` hook.
hookimpl = pluggy.HookimplMarker(PROJECT)
