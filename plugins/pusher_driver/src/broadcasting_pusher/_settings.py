"""Reading the ``pusher`` entry of ``DRIVERS`` into checked, typed settings."""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from broadcasting import ConfigurationError
from broadcasting.plugin import Secret

NAME = "pusher"

#: Every option the driver reads (the core reads the delivery options before it sees the rest).
KNOWN_OPTIONS = frozenset(
    {"app_id", "client", "key", "secret", "cluster", "host", "port", "ssl", "timeout"}
    | {"encryption_master_key_base64", "max_payload_bytes", "max_connections"}
)
_RENAMED = {"batch_events": "the core's 'batch' option"}  # options of earlier versions

DEFAULT_MAX_PAYLOAD_BYTES = 10 * 1024
DEFAULT_TIMEOUT = 5.0
DEFAULT_MAX_CONNECTIONS = 10

_DIGITS = re.compile(r"[0-9]+")
_CLUSTER = re.compile(r"[a-z0-9][a-z0-9-]*")
_HOST = re.compile(r"[A-Za-z0-9._\-]+|\[[0-9A-Fa-f:.]+\]")


@dataclass(frozen=True)
class PusherSettings:
    """The driver's options, checked. Secrets are kept in :class:`~broadcasting.Secret`."""

    app_id: str
    key: str
    secret: Secret
    host: str
    port: int
    ssl: bool = True
    cluster: str | None = None
    timeout: float = DEFAULT_TIMEOUT
    encryption_master_key: Secret | None = None
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES
    max_connections: int = DEFAULT_MAX_CONNECTIONS

    @property
    def scheme(self) -> str:
        return "https" if self.ssl else "http"

    @property
    def base_url(self) -> str:
        """Where requests go, e.g. ``https://api-eu.pusher.com:443``."""
        return f"{self.scheme}://{self.host}:{self.port}"


def _positive_int(options: Mapping[str, Any], key: str, default: int) -> int:
    value = options.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigurationError(NAME, key, "must be an int >= 1")
    return value


def _text(options: Mapping[str, Any], key: str, what: str) -> str | None:
    value = options.get(key)
    if value is None:
        return None
    if isinstance(value, Secret):
        value = value.reveal()
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError(NAME, key, f"must be {what} (a non-empty string)")
    if value != value.strip():
        raise ConfigurationError(NAME, key, "has leading or trailing whitespace")
    return value


def _app_id(options: Mapping[str, Any]) -> str:
    value = options.get("app_id")
    if value is None or value == "":
        raise ConfigurationError(NAME, "app_id", "is required (your Pusher app's numeric id)")
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return str(value)
    if isinstance(value, str) and _DIGITS.fullmatch(value.strip()):
        return value.strip()
    raise ConfigurationError(
        NAME,
        "app_id",
        "must be numeric: the Pusher HTTP API and the pusher SDK only accept an app id made "
        "of digits (e.g. '1234567'); self-hosted servers such as soketi need one configured too",
    )


def _key(options: Mapping[str, Any]) -> str:
    key, client = _text(options, "key", "the app key"), _text(options, "client", "the app key")
    if key is not None and client is not None and key != client:
        raise ConfigurationError(
            NAME, "client", "conflicts with 'key' ('client' is the old name of 'key'; give one)"
        )
    value = key or client
    if value is None:
        raise ConfigurationError(NAME, "key", "is required (the app key; 'client' also works)")
    return value


def _master_key(options: Mapping[str, Any]) -> Secret | None:
    raw = options.get("encryption_master_key_base64")
    if raw is None:
        return None
    if isinstance(raw, Secret):
        raw = raw.reveal()
    if isinstance(raw, str):
        with suppress(ValueError):  # not ASCII, not base64
            if len(base64.b64decode(raw.encode("ascii"), validate=True)) == 32:
                return Secret(raw)
    problem = "must be base64 text that decodes to exactly 32 bytes"
    raise ConfigurationError(NAME, "encryption_master_key_base64", problem)


def _host_and_port(options: Mapping[str, Any], ssl: bool) -> tuple[str, str | None, int]:
    host = _text(options, "host", "a host name")
    cluster = _text(options, "cluster", "a cluster name such as 'eu' or 'mt1'")
    if cluster is not None and not _CLUSTER.fullmatch(cluster):
        raise ConfigurationError(NAME, "cluster", "must be a cluster name such as 'eu' or 'mt1'")
    if host is not None and not _HOST.fullmatch(host):
        raise ConfigurationError(
            NAME, "host", "must be a bare host name or address (no scheme, port or path)"
        )
    port = options.get("port")
    if port is not None and (
        not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536
    ):
        raise ConfigurationError(NAME, "port", "must be an int from 1 to 65535")
    if host is None:
        host = f"api-{cluster}.pusher.com" if cluster else "api.pusherapp.com"
    return host, cluster, port or (443 if ssl else 80)


def parse_settings(options: Mapping[str, Any]) -> PusherSettings:
    """Check ``options``; a ConfigurationError names the bad key."""
    if not isinstance(options, Mapping):
        raise ConfigurationError(NAME, None, "its options must be a mapping")
    for key in options:
        if key in _RENAMED:
            raise ConfigurationError(NAME, key, f"was replaced by {_RENAMED[key]}")
        if key not in KNOWN_OPTIONS:
            known = ", ".join(sorted(KNOWN_OPTIONS))
            raise ConfigurationError(
                NAME, str(key), f"unknown option (known: {known}, and the delivery options)"
            )
    app_id = _app_id(options)
    key = _key(options)
    secret = _text(options, "secret", "the app secret")
    if secret is None:
        raise ConfigurationError(NAME, "secret", "is required (the app secret)")
    ssl = options.get("ssl", True)
    if not isinstance(ssl, bool):
        raise ConfigurationError(NAME, "ssl", "must be True or False")
    host, cluster, port = _host_and_port(options, ssl)
    timeout = options.get("timeout", DEFAULT_TIMEOUT)
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or not timeout > 0:
        raise ConfigurationError(NAME, "timeout", "must be a number of seconds > 0")
    return PusherSettings(
        app_id=app_id,
        key=key,
        secret=Secret(secret),
        host=host,
        port=port,
        ssl=ssl,
        cluster=cluster,
        timeout=float(timeout),
        encryption_master_key=_master_key(options),
        max_payload_bytes=_positive_int(options, "max_payload_bytes", DEFAULT_MAX_PAYLOAD_BYTES),
        max_connections=_positive_int(options, "max_connections", DEFAULT_MAX_CONNECTIONS),
    )
