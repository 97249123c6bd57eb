"""System checks (``manage.py check``, and as every command starts): a bad ``BROADCASTING``
is reported at start-up, before any request. Each id is documented in docs/django.md.

- ``broadcasting.W001``: ``BROADCASTING`` is not set (the ``log`` driver only logs publishes);
  not set, but ``$BROADCAST_DRIVER`` names another driver: that driver is checked.
- ``broadcasting.E001``: ``BROADCASTING`` is not a configuration (``DRIVER``, ``DRIVERS``,
  ``OUTBOX``).
- ``broadcasting.E002``: a driver it names is not installed, or its plugin does not load.
- ``broadcasting.E003``: a driver's options are wrong (the message names the key, never a value).
  An option left ``None`` (``os.environ.get()`` of an unset variable) is reported by
  ``check --deploy`` only, so that ``makemigrations`` and tests run without credentials.
  Each wrong option is an E003 of its own, all at once: a driver that finds several raises
  one ConfigurationError holding them all (its ``problems``); one that raises at its first
  shows the next after that one is fixed. The core's delivery options (``retries``...) are
  checked before the driver is built: a wrong one does not hide the driver's own.
- ``broadcasting.E004``: ``BROADCASTING_ENDPOINTS`` is wrong (its ``driver`` too: a name no
  driver has).
- ``broadcasting.E005``: ``BROADCASTING_CLIENT`` is wrong.

No check sends anything: drivers are built (which checks their options) and closed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from broadcasting._broadcast import Broadcast
from broadcasting._config import load_config
from broadcasting._errors import (
    BroadcastError,
    ConfigurationError,
    DriverNotFoundError,
    PluginLoadError,
)

__all__ = ["CLIENT_SETTING", "check_settings", "register"]

#: The optional setting with overrides for the browser's config (``{"wsHost": ...}``).
CLIENT_SETTING = "BROADCASTING_CLIENT"
TAG = "broadcasting"


def register() -> None:
    """Register :func:`check_settings` and :func:`check_deploy_settings` (a set: once)."""
    from django.core import checks  # type: ignore[import-untyped, unused-ignore]

    checks.register(check_settings, TAG)
    checks.register(check_deploy_settings, TAG, deploy=True)


def check_deploy_settings(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """``check --deploy``: the options :func:`check_settings` leaves to deployment (``None``)."""
    from django.conf import settings  # type: ignore[import-untyped, unused-ignore]

    from broadcasting.contrib.django._broadcast import SETTING

    value = getattr(settings, SETTING, None)
    if not isinstance(value, Mapping):
        return []
    try:
        load_config(value)
    except ConfigurationError:
        return []  # check_settings reports it
    return _check_drivers(value, deploy=True)


def check_settings(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """The problems of ``BROADCASTING``, ``BROADCASTING_ENDPOINTS`` and ``BROADCASTING_CLIENT``."""
    from django.conf import settings  # type: ignore[import-untyped, unused-ignore]
    from django.core.checks import Error, Warning  # type: ignore[import-untyped, unused-ignore]

    from broadcasting.contrib.django._broadcast import SETTING
    from broadcasting.contrib.django._endpoints import ENDPOINTS_SETTING, endpoint_settings

    found: list[Any] = []
    value = getattr(settings, SETTING, None)
    if value is None and _default_driver() == "log":
        found.append(
            Warning(
                f"{SETTING} is not set: every publish goes to the 'log' driver, which only logs it",
                hint=f"Set {SETTING} to a dict with DRIVER and DRIVERS (docs/configuration.md).",
                id="broadcasting.W001",
            )
        )
    elif value is None:  # the driver $BROADCAST_DRIVER names, as the project's Broadcast takes
        found.extend(_check_drivers({}))
    elif not isinstance(value, Mapping):
        found.append(
            Error(
                f"{SETTING} must be a dict with DRIVER and DRIVERS, not {type(value).__name__}",
                id="broadcasting.E001",
            )
        )
    else:
        found.extend(_check_drivers(value))
    try:
        endpoints = endpoint_settings()
    except TypeError as exc:
        found.append(Error(str(exc), obj=ENDPOINTS_SETTING, id="broadcasting.E004"))
    else:
        if endpoints.driver is not None and isinstance(value, (Mapping, type(None))):
            found.extend(_check_endpoints_driver(value, endpoints.driver))
    client = getattr(settings, CLIENT_SETTING, None)
    if client is not None and not _json_object(client):
        found.append(
            Error(
                f"{CLIENT_SETTING} must be a dict of the browser client's options, JSON only",
                id="broadcasting.E005",
            )
        )
    return found


def _check_endpoints_driver(value: Mapping[str, Any] | None, name: str) -> list[Any]:
    """E004 if ``BROADCASTING_ENDPOINTS['driver']`` names no driver (every request to the
    endpoints would be a 500); its options are E003's, when ``DRIVERS`` lists it."""
    from django.core.checks import Error  # type: ignore[import-untyped, unused-ignore]

    from broadcasting.contrib.django._endpoints import ENDPOINTS_SETTING

    try:
        broadcast = Broadcast(value)
    except BroadcastError:
        return []  # E001 says what is wrong with BROADCASTING
    try:
        broadcast.driver(name)
    except DriverNotFoundError as exc:
        problem = f"{ENDPOINTS_SETTING}['driver'] names no driver: {exc}"
        return [Error(problem, obj=ENDPOINTS_SETTING, id="broadcasting.E004")]
    except Exception:  # its options, or its plugin: E002 and E003 say so for DRIVERS' drivers
        return []
    finally:
        broadcast.close()
    return []


def _default_driver() -> str | None:
    """The driver a Broadcast without configuration publishes through: ``$BROADCAST_DRIVER``,
    else ``log`` (``None`` if the variable is set but wrong: :func:`_check_drivers` says so)."""
    try:
        return load_config(None).driver
    except ConfigurationError:
        return None


def _check_drivers(value: Mapping[str, Any], *, deploy: bool = False) -> list[Any]:
    """Build each driver (checking its options) and close them: the errors. Without
    ``deploy``, an option whose value is ``None`` is left to :func:`check_deploy_settings`;
    with it, only those are reported."""
    from django.core.checks import Error  # type: ignore[import-untyped, unused-ignore]

    try:
        config = load_config(value)
    except ConfigurationError as exc:
        return [Error(str(exc), id="broadcasting.E001")]
    found: list[Any] = [] if deploy else _check_outbox(config.outbox)
    broadcast = Broadcast(value)
    try:
        for name in dict.fromkeys([config.driver, *config.drivers]):
            # a wrong delivery option comes with the driver's own problems (the core asks
            # the driver too), so every wrong option is an E003 at once
            _check_driver(broadcast, name, config.options(name), deploy, found)
    finally:
        broadcast.close()
    return found


def _check_driver(
    broadcast: Broadcast, name: str, options: Mapping[str, Any], deploy: bool, found: list[Any]
) -> None:
    """Build driver ``name`` and add its problems to ``found``, an E003 for each problem of a
    ConfigurationError."""
    from django.core.checks import Error  # type: ignore[import-untyped, unused-ignore]

    try:
        broadcast.driver(name)
    except (DriverNotFoundError, PluginLoadError) as exc:
        if not deploy:
            found.append(Error(str(exc), obj=f"driver {name!r}", id="broadcasting.E002"))
    except ConfigurationError as exc:
        for problem in exc.problems:
            if _unset(problem, options) == deploy:
                found.append(Error(str(problem), obj=f"driver {name!r}", id="broadcasting.E003"))
    except BroadcastError as exc:  # any other of ours
        if not deploy:
            found.append(Error(str(exc), obj=f"driver {name!r}", id="broadcasting.E003"))
    except Exception as exc:  # a driver's bug: its message may quote an option
        if not deploy:
            found.append(
                Error(
                    f"building the driver raised {type(exc).__name__} (message withheld)",
                    obj=f"driver {name!r}",
                    id="broadcasting.E003",
                )
            )


def _check_outbox(outbox: Mapping[str, Any]) -> list[Any]:
    """The problems of ``OUTBOX`` (what every ``send="outbox"`` publish would refuse): its
    store is made, which connects to nothing, and closed."""
    from django.conf import settings  # type: ignore[import-untyped, unused-ignore]
    from django.core.checks import Error  # type: ignore[import-untyped, unused-ignore]

    from broadcasting.outbox._store import Store

    if not outbox:
        return []
    alias = outbox.get("django")
    if isinstance(alias, str) and alias and alias not in settings.DATABASES:
        problem = f"Configuration error (setting 'OUTBOX'): 'django' names {alias!r}"
        return [Error(f"{problem}, which is not in DATABASES", id="broadcasting.E001")]
    try:
        Store.from_config(outbox).close()
    except ConfigurationError as exc:
        return [Error(str(exc), id="broadcasting.E001")]
    except Exception as exc:  # its message may quote the URL, with a password
        problem = f"OUTBOX: making the outbox's store raised {type(exc).__name__}"
        return [Error(f"{problem} (message withheld)", id="broadcasting.E001")]
    return []


def _unset(problem: ConfigurationError, options: Mapping[str, Any]) -> bool:
    """Whether ``problem`` is about an option given as ``None`` (an unset environment variable):
    that option, or one not given at all while another is ``None`` (a driver may ask for an
    option by another name than the one given: Ably's ``secret``, given as ``key``)."""
    key = problem.key
    if not isinstance(key, str):
        return False
    if key in options:
        return options[key] is None
    return any(value is None for value in options.values())


def _json_object(value: object) -> bool:
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        return False
    try:
        json.dumps(value, allow_nan=False)  # Python writes NaN, which JSON.parse refuses
    except (TypeError, ValueError):
        return False
    return True
