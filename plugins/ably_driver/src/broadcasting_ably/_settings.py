"""The ``ably`` entry of ``DRIVERS``, checked (options: the package README)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from broadcasting import ConfigurationError
from broadcasting.plugin import Secret

DRIVER = "ably"

#: ``appId.keyId:keySecret`` — the shape of an Ably API key.
KEY_SHAPE = re.compile(r"[^\s.:]+\.[^\s.:]+:[^\s:]+")

DEFAULT_MAX_PAYLOAD_BYTES = 64 * 1024
#: Lifetime of the tokens ``authorize()`` signs (Ably's default for its own tokens).
DEFAULT_TOKEN_TTL = 3600
#: Ably's longest token lifetime (24 hours).
MAX_TOKEN_TTL = 24 * 3600

#: Settings handed to the SDK under the same name when set.
_SDK_NAMES = (
    "client_id",
    "endpoint",
    "port",
    "tls_port",
    "http_open_timeout",
    "http_request_timeout",
)
#: Options of earlier versions that the core now reads under another name.
RENAMED = {"batch_publishes": "batch"}


@dataclass(frozen=True, repr=False)
class AblySettings:
    """The checked options of one ``ably`` driver. The key stays a :class:`Secret`."""

    key: Secret
    client_id: str | None = None
    endpoint: str | None = None
    port: int | None = None
    tls_port: int | None = None
    tls: bool = True
    http_open_timeout: float | None = None
    http_request_timeout: float | None = None
    fallback_hosts: tuple[str, ...] | None = None
    use_binary_protocol: bool = True
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES
    token_ttl: int = DEFAULT_TOKEN_TTL

    @property
    def has_fallback_hosts(self) -> bool:
        """Whether the SDK tries other hosts after a 5xx or a network error (the SDK's rule)."""
        # a routing policy (`main`, the default) has Ably's; a host name or address has none
        if self.fallback_hosts is not None:
            return bool(self.fallback_hosts)
        endpoint = self.endpoint or "main"
        return not ("." in endpoint or "::" in endpoint or "localhost" in endpoint)

    def hosts(self, budget: int) -> int:
        """How many hosts the SDK may try for a request that may take ``budget`` requests."""
        return max(1, budget) if self.has_fallback_hosts else 1

    def sdk_options(self, hosts: int) -> dict[str, Any]:
        """Keyword arguments for ``AblyRest`` / ``AblyRestSync``, but auth."""
        options: dict[str, Any] = {
            "tls": self.tls,
            "use_binary_protocol": self.use_binary_protocol,
            "idempotent_rest_publishing": True,  # the driver sets every message id itself
            # the SDK re-sends a 5xx or a network error to the next host at once; the driver
            # reports the requests it made (Batch.requests) so the core counts them
            "http_max_retry_count": hosts,
        }
        for name in _SDK_NAMES:
            if getattr(self, name) is not None:
                options[name] = getattr(self, name)
        if self.fallback_hosts is not None:
            options["fallback_hosts"] = list(self.fallback_hosts)
        return options

    def __repr__(self) -> str:
        return (
            f"AblySettings(key={self.key!r}, client_id={self.client_id!r}, "
            f"endpoint={self.endpoint!r}, tls={self.tls!r})"
        )


#: Every setting by its name, and the other names some take.
KNOWN_OPTIONS = frozenset(
    {f.name for f in fields(AblySettings)} | {"secret", "environment", "rest_host", "timeout"}
)


def _int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _positive(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


#: A validator and what it requires, for :func:`_checked`.
_STRING = (lambda v: isinstance(v, str) and v.strip(), "must be a non-empty string")
_PORT = (lambda v: _int(v) and 0 < v < 65536, "must be a port number (1-65535)")


def _checked(
    options: Mapping[str, Any], key: str, valid: Callable[[Any], object], problem: str
) -> Any:
    """``options[key]`` or ``None``; a ConfigurationError naming the key if not ``valid``."""
    value = options.get(key)
    if value is not None and not valid(value):
        raise ConfigurationError(DRIVER, key, problem)
    return value


def _bool(options: Mapping[str, Any], key: str, default: bool) -> bool:
    value = _checked(options, key, lambda v: isinstance(v, bool), "must be True or False")
    return default if value is None else bool(value)


def _seconds(options: Mapping[str, Any], key: str) -> float | None:
    value = _checked(options, key, _positive, "must be a number of seconds > 0")
    return None if value is None else float(value)


def _key(options: Mapping[str, Any]) -> Secret:
    given = [name for name in ("key", "secret") if options.get(name) is not None]
    if not given:
        raise ConfigurationError(
            DRIVER, "secret", "is missing: set 'secret' (or 'key') to an Ably API key"
        )
    if len(given) == 2:
        raise ConfigurationError(DRIVER, "key", "give either 'key' or 'secret', not both")
    name = given[0]
    value = options[name]
    if isinstance(value, Secret):
        value = value.reveal()
    if not isinstance(value, str):
        raise ConfigurationError(DRIVER, name, "must be a string (an Ably API key)")
    if KEY_SHAPE.fullmatch(value.strip()) is None:
        raise ConfigurationError(
            DRIVER,
            name,
            "is not an Ably API key: expected the form 'appId.keyId:keySecret' "
            "(copy it from the API Keys tab of your Ably app)",
        )
    return Secret(value.strip())


def parse_settings(options: Mapping[str, Any]) -> AblySettings:
    """Check ``options`` (the core has taken its delivery options out)."""
    for name in options:
        if name in RENAMED:
            raise ConfigurationError(
                DRIVER, name, f"was renamed: use the core's delivery option {RENAMED[name]!r}"
            )
        if name not in KNOWN_OPTIONS:
            raise ConfigurationError(DRIVER, str(name), "unknown option")
    key = _key(options)
    client_id = _checked(options, "client_id", *_STRING)
    if client_id == "*":
        raise ConfigurationError(DRIVER, "client_id", "'*' is reserved and cannot publish")

    hosts = [name for name in ("endpoint", "environment", "rest_host") if name in options]
    if len(hosts) > 1:
        raise ConfigurationError(
            DRIVER, hosts[1], f"give only one of 'endpoint', 'environment', 'rest_host' ({hosts})"
        )
    # the SDK's deprecated names for `endpoint` (it would log a warning on every client)
    endpoint = _checked(options, hosts[0], *_STRING) if hosts else None
    if not _bool(options, "tls", True):
        raise ConfigurationError(
            DRIVER, "tls", "Ably refuses API-key (Basic) authentication without TLS"
        )
    timeout = _seconds(options, "timeout")
    fallback_hosts = _checked(
        options,
        "fallback_hosts",
        lambda v: isinstance(v, (list, tuple)) and all(isinstance(h, str) and h for h in v),
        "must be a list of host names",
    )
    max_payload = _checked(
        options, "max_payload_bytes", lambda v: _int(v) and v >= 1, "must be a positive int"
    )
    token_ttl = _checked(
        options,
        "token_ttl",
        lambda v: _int(v) and 60 <= v <= MAX_TOKEN_TTL,
        f"must be a number of seconds from 60 to {MAX_TOKEN_TTL}",
    )
    return AblySettings(
        key=key,
        client_id=client_id,
        endpoint=endpoint,
        port=_checked(options, "port", *_PORT),
        tls_port=_checked(options, "tls_port", *_PORT),
        http_open_timeout=_seconds(options, "http_open_timeout") or timeout,
        http_request_timeout=_seconds(options, "http_request_timeout") or timeout,
        fallback_hosts=None if fallback_hosts is None else tuple(fallback_hosts),
        use_binary_protocol=_bool(options, "use_binary_protocol", True),
        max_payload_bytes=max_payload or DEFAULT_MAX_PAYLOAD_BYTES,
        token_ttl=token_ttl or DEFAULT_TOKEN_TTL,
    )
