"""The app's config: the rules and webhook handlers of each app, found as Django starts."""

from __future__ import annotations

import sys
from typing import Any

from django.apps import AppConfig  # type: ignore[import-untyped, unused-ignore]

#: The module each installed app may have, with its channel rules and webhook handlers.
MODULE = "broadcasting"


class BroadcastingConfig(AppConfig):  # type: ignore[misc, unused-ignore]
    """``broadcasting.contrib.django``: imports each installed app's ``broadcasting.py`` in
    :meth:`ready`, rebuilds the project's Broadcast when ``BROADCASTING`` changes (the
    endpoints when ``BROADCASTING_ENDPOINTS`` does), and registers the system checks."""

    name = "broadcasting.contrib.django"
    label = "broadcasting"
    verbose_name = "Broadcasting"

    def ready(self) -> None:
        from django.core.signals import setting_changed  # type: ignore[import-untyped, unused-ignore]
        from django.utils.module_loading import autodiscover_modules  # type: ignore[import-untyped, unused-ignore]

        from broadcasting.contrib.django import checks

        checks.register()
        setting_changed.connect(_setting_changed, dispatch_uid="broadcasting.setting_changed")
        # each module runs once per process (Python keeps it): a rule is never added twice
        autodiscover_modules(MODULE)


def _setting_changed(*, setting: str, **kwargs: Any) -> None:
    from broadcasting.contrib.django import broadcast
    from broadcasting.contrib.django._broadcast import SETTING, SettingsBroadcast

    if setting == SETTING and isinstance(broadcast, SettingsBroadcast):
        broadcast.reset()
    elif setting == "BROADCASTING_ENDPOINTS" and "django.urls" in sys.modules:
        from broadcasting.contrib.django._endpoints import remount

        remount()  # the mounted endpoints follow it (their lists were made at import)
