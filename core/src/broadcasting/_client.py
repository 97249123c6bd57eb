"""The browser's configuration, from the server's: what pusher-js, ably-js or Laravel Echo need
to connect (never a secret), as a dict for JSON and as an HTML ``<script>`` block."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from broadcasting._errors import ConfigurationError
from broadcasting._plugins import declared_secret_options, driver_plugin
from broadcasting._types import Secret

if TYPE_CHECKING:
    from broadcasting._broadcast import Broadcast, DriverRef

__all__ = ["DEFAULT_ELEMENT_ID", "client_config", "client_config_html"]

#: The ``id`` of the ``<script type="application/json">`` element.
DEFAULT_ELEMENT_ID = "broadcasting-config"
#: A secret shorter than this is not searched for in the output (it would match anywhere).
_MIN_SECRET = 4
#: The sections of the config whose contents a page may override.
_SECTIONS = ("options", "echo")
#: The names of an option that may hold the public app key the config gives as ``key``
#: (Pusher's ``key``): named like a secret only for the word "key". ``api_key``, ``secret``,
#: ``token`` or an option the driver declares secret never may.
_PUBLIC_KEY_OPTION = re.compile(r"(?:(?:app|public)[_-])?key", re.IGNORECASE)


def client_config(
    broadcast: Broadcast,
    *,
    driver: DriverRef = None,
    auth_endpoint: str = "/broadcasting/auth",
    user_auth_endpoint: str = "/broadcasting/user-auth",
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """What the browser needs to connect to ``driver``'s service (default: ``DRIVER``).

    A dict ready for JSON: ``driver`` (its name), ``client`` (``"pusher-js"``, ``"ably-js"``),
    ``key`` (the public app key, or ``None``), ``options`` (the client's own options, with the
    endpoints: ``new Pusher(config.key, config.options)``, ``new Ably.Realtime(config.options)``)
    and ``echo`` (``new Echo(config.echo)``). ``overrides`` replace or add options in both
    ``options`` and ``echo`` (a browser that reaches the server by another host:
    ``{"wsHost": "ws.example.com"}``).

    Raises :class:`NotSupportedError` for a driver without browser clients (``memory``,
    ``log``), :class:`ConfigurationError` if the result would hold one of the driver's secret
    options, or an override is a secret or not JSON. Nothing is sent anywhere.
    """
    for name, value in (
        ("auth_endpoint", auth_endpoint),
        ("user_auth_endpoint", user_auth_endpoint),
    ):
        if not isinstance(value, str) or not value:
            raise TypeError(f"{name} must be a non-empty str (a path or URL)")
    target = broadcast._target(driver)
    made = target.driver.client_config(auth_endpoint, user_auth_endpoint)
    config: dict[str, Any] = {"driver": target.name, **made}
    if overrides:
        for section in _SECTIONS:
            if isinstance(config.get(section), Mapping):
                config[section] = {**config[section], **overrides}
    try:
        _check(config, target.name, target.options, _declared(target.name, target.driver))
    except ConfigurationError as exc:
        error = exc
    else:
        return config
    # what the driver made (and the overrides) may hold the secret the error is about: raised
    # without them, and without the frame of the check that found it
    del made, config, overrides
    raise error.with_traceback(None)


def client_config_html(
    broadcast: Broadcast, *, element_id: str = DEFAULT_ELEMENT_ID, **options: Any
) -> str:
    """:func:`client_config` as ``<script type="application/json" id="...">``, for a template.

    The JSON is escaped so that nothing in it can close the element (``</script>``) or start
    markup; the page reads it with
    ``JSON.parse(document.getElementById("broadcasting-config").textContent)``.
    ``options``: those of :func:`client_config`.
    """
    return script_element(client_config(broadcast, **options), element_id)


def script_element(config: Mapping[str, Any], element_id: str = DEFAULT_ELEMENT_ID) -> str:
    """``config`` as JSON in a ``<script type="application/json">`` element, escaped."""
    text = json.dumps(
        config, separators=(",", ":"), ensure_ascii=False, sort_keys=True, allow_nan=False
    )
    # JSON allows \\u escapes anywhere in a string: none of these can then end the element
    text = text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
    text = text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    return f'<script type="application/json" id="{html.escape(element_id)}">{text}</script>'


def _declared(name: str, driver: object) -> frozenset[str]:
    """The options ``driver``'s class, or its plugin, declares secret (``secret_options``)."""
    declared = frozenset(getattr(type(driver), "secret_options", frozenset()))
    plugin = driver_plugin(name)
    return declared if plugin is None else declared | declared_secret_options(name, plugin)


def _check(
    config: Mapping[str, Any],
    driver: str,
    options: Mapping[str, Any],
    declared: frozenset[str] = frozenset(),
) -> None:
    """Refuse a config holding a Secret, one of the driver's secret options' values, or
    anything JSON cannot hold. The one exception: the public app key returned as ``key``,
    from an option named for it (``key``, ``app_key``, ``public_key``) that the driver does
    not declare secret; any other secret option's value is refused there too."""
    failure: str | None = None
    try:
        # NaN and infinity too: Python would write them, the browser's JSON.parse refuses them
        text = json.dumps(config, ensure_ascii=False, default=_refuse, allow_nan=False)
    except (TypeError, ValueError) as exc:
        failure = str(exc)
    if failure is not None:
        # raised outside the except block: the JSON error's frames (the encoder's, holding the
        # config, a secret the scan below would have refused too) are not its context
        raise ConfigurationError(driver, None, f"its client config is not JSON: {failure}")
    public = config.get("key")
    for name, value in options.items():
        if not isinstance(value, Secret):
            continue
        revealed = value.reveal()
        if not isinstance(revealed, str) or len(revealed) < _MIN_SECRET:
            continue
        if revealed == public and _may_be_public(name, declared):
            continue
        # as the JSON text holds it: a value with a quote, backslash or control escaped
        if revealed in text or json.dumps(revealed, ensure_ascii=False)[1:-1] in text:
            where = " as its public 'key'" if revealed == public else ""
            raise ConfigurationError(
                driver, str(name), f"is secret and would be in the browser's client config{where}"
            )


def _may_be_public(name: object, declared: frozenset[str]) -> bool:
    """Whether option ``name`` may hold the public app key the config gives as ``key``."""
    return (
        isinstance(name, str) and name not in declared and bool(_PUBLIC_KEY_OPTION.fullmatch(name))
    )


def _refuse(value: object) -> Any:
    if isinstance(value, Secret):
        raise TypeError("it holds a Secret")
    raise TypeError(f"it holds a {type(value).__name__}")
