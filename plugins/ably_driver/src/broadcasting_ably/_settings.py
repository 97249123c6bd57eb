"""Reading the ``ably`` entry of ``DRIVERS`` into checked settings."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from broadcasting import ConfigurationError, Secret

DRIVER = "ably"

#: ``appId.keyId:keySecret`` — the shape of an Ably API key.
KEY_SHAPE = re.compile(r"[^\s.:]+\.[^\s.:]+:[^\s:]+")

DEFAULT_MAX_PAYLOAD_BYTES = 64 * 1024
#: Lifetime of the tokens ``authorize()`` signs (Ably's default for its own tokens).
DEFAULT_TOKEN_TTL = 3600
#: Ably's longest token lifetime (24 hours).
MAX_TOKEN_TTL = 24 * 3600

KNOWN_OPTIONS = frozenset(
    {
        "secret",
        "key",
        "client_id",
        "endpoint",
        "environment",
        "rest_host",
        "port",
        "tls_port",
        "tls",
        "timeout",
        "http_open_timeout",
        "http_request_timeout",
        "fallback_hosts",
        "use_binary_protocol",
        "max_payload_bytes",
        "token_ttl",
    }
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
        """Whether the SDK will try other hosts after a 5xx or a network error.

        Mirrors the SDK's rule: a routing-policy endpoint (``main``, the
        default) has Ably's fallback hosts; a host name or address has none
        unless ``fallback_hosts`` lists some.
        """
        if self.fallback_hosts is not None:
            return bool(self.fallback_hosts)
        endpoint = self.endpoint or "main"
        return not ("." in endpoint or "::" in endpoint or "localhost" in endpoint)

    def sdk_options(self, retries: int) -> dict[str, Any]:
        """Keyword arguments for ``AblyRest`` / ``AblyRestSync`` (the key is added last).

        ``retries`` is the core's retry budget (the ``retries`` delivery option).
        """
        options: dict[str, Any] = {
            "tls": self.tls,
            "use_binary_protocol": self.use_binary_protocol,
            # The driver sets every message id itself (see _wire.wire_message).
            "idempotent_rest_publishing": True,
            # With fallback hosts the SDK re-sends a request that got a 5xx or a
            # network error to the next host at once. The core's retry budget
            # sets how many hosts it may try, and the driver reports the hosts
            # tried (Batch.requests), so the core counts them: no doubled retries.
            "http_max_retry_count": 1 + retries if self.has_fallback_hosts else 1,
        }
        for name in ("client_id", "endpoint", "port", "tls_port"):
            value = getattr(self, name)
            if value is not None:
                options[name] = value
        if self.http_open_timeout is not None:
            options["http_open_timeout"] = self.http_open_timeout
        if self.http_request_timeout is not None:
            options["http_request_timeout"] = self.http_request_timeout
        if self.fallback_hosts is not None:
            options["fallback_hosts"] = list(self.fallback_hosts)
        return options

    def __repr__(self) -> str:
        return (
            f"AblySettings(key={self.key!r}, client_id={self.client_id!r}, "
            f"endpoint={self.endpoint!r}, tls={self.tls!r})"
        )


def _string(options: Mapping[str, Any], key: str) -> str | None:
    value = options.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError(DRIVER, key, "must be a non-empty string")
    return value


def _port(options: Mapping[str, Any], key: str) -> int | None:
    value = options.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value < 65536:
        raise ConfigurationError(DRIVER, key, "must be a port number (1-65535)")
    return value


def _bool(options: Mapping[str, Any], key: str, default: bool) -> bool:
    value = options.get(key, default)
    if not isinstance(value, bool):
        raise ConfigurationError(DRIVER, key, "must be True or False")
    return value


def _seconds(options: Mapping[str, Any], key: str) -> float | None:
    value = options.get(key)
    if value is None:
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
        raise ConfigurationError(DRIVER, key, "must be a number of seconds > 0")
    return float(value)


def _key(options: Mapping[str, Any]) -> Secret:
    given = [name for name in ("key", "secret") if options.get(name) is not None]
    if not given:
        raise ConfigurationError(
            DRIVER, "secret", "is missing: set 'secret' (or 'key') to an Ably API key"
        )
    if len(given) == 2:
        raise ConfigurationError(DRIVER, "key", "give either 'key' or 'secret', not both")
    name = given[0]
    given_value = options[name]
    if isinstance(given_value, Secret):
        given_value = given_value.reveal()
    if not isinstance(given_value, str):
        raise ConfigurationError(DRIVER, name, "must be a string (an Ably API key)")
    value = given_value.strip()
    if KEY_SHAPE.fullmatch(value) is None:
        raise ConfigurationError(
            DRIVER,
            name,
            "is not an Ably API key: expected the form 'appId.keyId:keySecret' "
            "(copy it from the API Keys tab of your Ably app)",
        )
    return Secret(value)


def parse_settings(options: Mapping[str, Any]) -> AblySettings:
    """Check ``options`` and return settings; raise :class:`ConfigurationError` naming the key.

    The delivery options (``retries``, ``batch``...) are the core's: it reads them
    and removes them before the driver sees its options.
    """
    for name in options:
        if name in RENAMED:
            raise ConfigurationError(
                DRIVER, name, f"was renamed: use the core's delivery option {RENAMED[name]!r}"
            )
        if name not in KNOWN_OPTIONS:
            raise ConfigurationError(DRIVER, str(name), "unknown option")
    key = _key(options)

    client_id = _string(options, "client_id")
    if client_id == "*":
        raise ConfigurationError(DRIVER, "client_id", "'*' is reserved and cannot publish")

    hosts = [name for name in ("endpoint", "environment", "rest_host") if name in options]
    if len(hosts) > 1:
        raise ConfigurationError(
            DRIVER, hosts[1], f"give only one of 'endpoint', 'environment', 'rest_host' ({hosts})"
        )
    # `environment` and `rest_host` are the SDK's deprecated names for `endpoint`;
    # the SDK maps them the same way (and would log a warning on every client).
    endpoint = _string(options, hosts[0]) if hosts else None

    tls = _bool(options, "tls", True)
    if not tls:
        raise ConfigurationError(
            DRIVER, "tls", "Ably refuses API-key (Basic) authentication without TLS"
        )

    timeout = _seconds(options, "timeout")
    open_timeout = _seconds(options, "http_open_timeout") or timeout
    request_timeout = _seconds(options, "http_request_timeout") or timeout

    fallback_hosts = options.get("fallback_hosts")
    if fallback_hosts is not None:
        if not isinstance(fallback_hosts, (list, tuple)) or not all(
            isinstance(h, str) and h for h in fallback_hosts
        ):
            raise ConfigurationError(DRIVER, "fallback_hosts", "must be a list of host names")
        fallback_hosts = tuple(fallback_hosts)

    max_payload = options.get("max_payload_bytes", DEFAULT_MAX_PAYLOAD_BYTES)
    if not isinstance(max_payload, int) or isinstance(max_payload, bool) or max_payload < 1:
        raise ConfigurationError(DRIVER, "max_payload_bytes", "must be a positive int")

    token_ttl = options.get("token_ttl", DEFAULT_TOKEN_TTL)
    if (
        not isinstance(token_ttl, int)
        or isinstance(token_ttl, bool)
        or not 60 <= token_ttl <= MAX_TOKEN_TTL
    ):
        raise ConfigurationError(
            DRIVER, "token_ttl", f"must be a number of seconds from 60 to {MAX_TOKEN_TTL}"
        )

    return AblySettings(
        key=key,
        client_id=client_id,
        endpoint=endpoint,
        port=_port(options, "port"),
        tls_port=_port(options, "tls_port"),
        tls=tls,
        http_open_timeout=open_timeout,
        http_request_timeout=request_timeout,
        fallback_hosts=fallback_hosts,
        use_binary_protocol=_bool(options, "use_binary_protocol", True),
        max_payload_bytes=max_payload,
        token_ttl=token_ttl,
    )
