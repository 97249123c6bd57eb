"""The Django app: ``INSTALLED_APPS += ["broadcasting.contrib.django"]`` (docs/django.md).

- ``settings.BROADCASTING``: ``DRIVER`` and ``DRIVERS``, what ``Broadcast()`` takes;
- ``from broadcasting.contrib.django import broadcast``: the project's Broadcast, built from
  it on first use, rebuilt when the setting changes;
- each installed app's ``broadcasting.py`` module (its rules and webhook handlers) imported
  as Django starts;
- ``path("broadcasting/", include("broadcasting.contrib.django.urls"))``: the endpoints;
- ``{% load broadcasting %}{% broadcasting_client_config %}``: the browser's config;
- ``manage.py broadcasting ...``: the command line; system checks ``broadcasting.*``.

Importing this package imports nothing of Django (or asgiref): its ``transaction`` module is
a plugin every ``Broadcast`` loads, with or without Django installed.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from broadcasting._fork import in_forked_child

if TYPE_CHECKING:
    from broadcasting._broadcast import Broadcast
    from broadcasting.contrib.django._broadcast import SettingsBroadcast

    #: The project's Broadcast, from ``settings.BROADCASTING`` (read on first use).
    broadcast: Broadcast

__all__ = ["SettingsBroadcast", "broadcast"]

_lock = threading.Lock()


@in_forked_child
def _forget_lock_in_child() -> None:
    """After fork: the lock may have been held by a parent thread that is not here."""
    global _lock
    _lock = threading.Lock()


def __getattr__(name: str) -> Any:
    """``broadcast`` and ``SettingsBroadcast``, made when first asked for."""
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from broadcasting.contrib.django import _broadcast

    if name == "SettingsBroadcast":
        return _broadcast.SettingsBroadcast
    with _lock:  # one project Broadcast, kept as a plain attribute from then on
        made = globals().get("broadcast")
        if made is None:
            made = globals()["broadcast"] = _broadcast.SettingsBroadcast()
    return made
