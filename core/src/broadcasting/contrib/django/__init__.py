"""The Django app: ``INSTALLED_APPS += ["broadcasting.contrib.django"]`` (docs/django.md).

- ``settings.BROADCASTING``: ``DRIVER`` and ``DRIVERS``, what ``Broadcast()`` takes;
- ``from broadcasting.contrib.django import broadcast``: the project's Broadcast, built from
  it on first use, rebuilt when the setting changes;
- each installed app's ``broadcasting.py`` module (its rules and webhook handlers) imported
  as Django starts;
- ``path("broadcasting/", include("broadcasting.contrib.django.urls"))``: the endpoints;
- ``{% load broadcasting %}{% broadcasting_client_config %}``: the browser's config;
- ``manage.py broadcasting ...``: the command line; system checks ``broadcasting.*``.
"""

from __future__ import annotations

from broadcasting._broadcast import Broadcast
from broadcasting.contrib.django._broadcast import SettingsBroadcast

__all__ = ["SettingsBroadcast", "broadcast"]

#: The project's Broadcast, from ``settings.BROADCASTING`` (read on first use).
broadcast: Broadcast = SettingsBroadcast()
