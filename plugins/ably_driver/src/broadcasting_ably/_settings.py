"""The ``ably`` entry of ``DRIVERS``, checked (options: the package README)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from broadcasting import ConfigurationError
from broadcasting.plugin import Secret

DRIVER = "ably"

KEY_SHAPE = re.compile(r"[^\s.:]+\.[^\s.:]+:[^\s:]+")  #: ``appId.keyId:keySecret``
DEFAULT_MAX_PAYLOAD_BYTES = 64 * 1024
DEFAULT_TOKEN_TTL = 3600  #: of the tokens the driver signs (Ably's default for its own)
MAX_TOKEN_TTL = 24 * 3600  #: Ably's longest token lifetime
MAX_TIMEOUT = 24 * 3600  #: a day: longer than any answer, and within what a socket can wait
RENAMED = {"batch_publishes": "batch"}  #: options of earlier versions the core now reads
#: Settings handed to the SDK under the same name when set.
_TO_SDK = ("client_id", "endpoint", "port", "tls_port", "http_open_timeout", "http_request_timeout")


@dataclass(frozen=True)
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
            # the SDK re-sends a 5xx or network error to the next host; Batch.requests counts them
            "http_max_retry_count": hosts,
        }
        options.update({n: getattr(self, n) for n in _TO_SDK if getattr(self, n) is not None})
        if self.fallback_hosts is not None:
            options["fallback_hosts"] = list(self.fallback_hosts)
        return options


def _int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_utf8(value: str) -> bool:
    """Whether ``value`` is text UTF-8 can encode: no lone surrogate (``os.environ`` holds
    one for each byte of a value that is not UTF-8)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


_STRING = (lambda v: isinstance(v, str) and v.strip(), "must be a non-empty string")
_PORT = (lambda v: _int(v) and 0 < v < 65536, "must be a port number (1-65535)")
_BOOL = (lambda v: isinstance(v, bool), "must be True or False")
_SECONDS = (
    # NaN fails the comparison; inf or 1e300 no socket can wait (every publish would fail)
    lambda v: (_int(v) or isinstance(v, float)) and 0 < v <= MAX_TIMEOUT,
    f"must be a number of seconds > 0 and at most {MAX_TIMEOUT:,} (a day)",
)
#: Every option but the key, and what its value must be when given (not ``None``).
_RULES: dict[str, tuple[Callable[[Any], object], str]] = {
    "client_id": (
        lambda v: isinstance(v, str) and v.strip() and is_utf8(v),
        "must be a non-empty string of valid text (no lone surrogate)",
    ),
    "endpoint": _STRING,
    # the SDK's deprecated names for `endpoint`, handed to it as that (it warns on each client)
    "environment": _STRING,
    "rest_host": _STRING,
    "port": _PORT,
    "tls_port": _PORT,
    "tls": _BOOL,
    "use_binary_protocol": _BOOL,
    "timeout": _SECONDS,
    "http_open_timeout": _SECONDS,
    "http_request_timeout": _SECONDS,
    "fallback_hosts": (
        lambda v: isinstance(v, (list, tuple)) and all(isinstance(h, str) and h for h in v),
        "must be a list of host names",
    ),
    "max_payload_bytes": (lambda v: _int(v) and v >= 1, "must be a positive int"),
    "token_ttl": (
        lambda v: _int(v) and 60 <= v <= MAX_TOKEN_TTL,
        f"must be a number of seconds from 60 to {MAX_TOKEN_TTL}",
    ),
}
KNOWN_OPTIONS = frozenset({"key", "secret", *_RULES})


def _invalid(key: str, problem: str) -> ConfigurationError:
    return ConfigurationError(DRIVER, key, problem)


def _key(options: Mapping[str, Any]) -> Secret:
    given = [name for name in ("key", "secret") if options.get(name) is not None]
    if not given:
        raise _invalid("secret", "is missing: set 'secret' (or 'key') to an Ably API key")
    if len(given) == 2:
        raise _invalid("key", "give either 'key' or 'secret', not both")
    name = given[0]
    value = options[name]
    if isinstance(value, Secret):
        value = value.reveal()
    if not isinstance(value, str):
        raise _invalid(name, "must be a string (an Ably API key)")
    if not value.isascii():  # Ably's keys are ASCII; not even a lone surrogate may reach encode()
        raise _invalid(
            name, "holds a character other than ASCII, which no Ably API key has: copy it again"
        )
    if KEY_SHAPE.fullmatch(value.strip()) is None:
        raise _invalid(
            name,
            "is not an Ably API key: expected the form 'appId.keyId:keySecret' "
            "(copy it from the API Keys tab of your Ably app)",
        )
    return Secret(value.strip())


#: A host name or IPv4 address (labels of letters, digits, ``-`` and ``_``), or an IPv6
#: address in brackets, as it goes into ``https://{host}:{port}`` (the SDK's URL).
_HOST = re.compile(
    r"[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?(?:\.[A-Za-z0-9_-]+)*\.?|\[[0-9A-Fa-f:.]+\]"
)
#: A routing policy: ``main``, ``sandbox``, ``nonprod:sandbox``... (``<name>.realtime.ably.net``)
_POLICY = re.compile(r"(?:nonprod:)?[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?")
_HOST_SHAPE = (
    "a host name or address alone ('rest.example.com', '127.0.0.1', '[::1]'), "
    "without scheme, port or path"
)
_ENDPOINT_SHAPE = (
    f"{_HOST_SHAPE}, or a routing policy ('main', 'sandbox', 'nonprod:sandbox'); "
    "set the port with 'tls_port' (or 'port')"
)


def _host_problem(value: str) -> str | None:
    """Why ``value`` is no host the SDK can put in a URL (``None``: it is one)."""
    if _HOST.fullmatch(value) is None:
        if "://" in value:
            return "has a scheme ('https://' or the like)"
        if "/" in value:
            return "has a path"
        if value.startswith("[") or value.count(":") > 1:
            return "is no IPv6 address in brackets ('[::1]')"
        if re.fullmatch(r"[^:]+:[0-9]+", value):
            return "has a port"
        return "is no host name"
    return None


def _endpoint_problem(value: str) -> str | None:
    """Why ``value`` is no ``endpoint`` the SDK reads as intended (``None``: it is one).
    The SDK takes a value holding ``.``, ``::`` or ``localhost`` as a host, anything else as
    a routing policy (``<policy>.realtime.ably.net``)."""
    if _POLICY.fullmatch(value) is not None:
        return None  # `localhost` matches too, and the SDK takes it for the host it is
    problem = _host_problem(value)
    if problem is not None or "." in value or "::" in value or "localhost" in value:
        return problem
    if value.startswith("["):
        return "is an IPv6 address without '::', which the ably SDK takes for a routing policy"
    return "is no routing policy (letters, digits, '-') nor a host name with a '.'"


def _hosts_problems(options: Mapping[str, Any]) -> list[ConfigurationError]:
    found = []
    for name in ("endpoint", "environment", "rest_host"):
        value = options.get(name)
        if isinstance(value, str) and (problem := _endpoint_problem(value)):
            found.append(_invalid(name, f"{problem}: it must be {_ENDPOINT_SHAPE}"))
    hosts = options.get("fallback_hosts")
    for host in hosts if isinstance(hosts, (list, tuple)) else ():
        if isinstance(host, str) and (problem := _host_problem(host)):
            problem = f"an entry {problem}: each must be {_HOST_SHAPE}"
            found.append(_invalid("fallback_hosts", problem))
            break  # one problem per option
    return found


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def parse_settings(options: Mapping[str, Any]) -> AblySettings:
    """Check ``options`` (the core has taken its delivery options out); a ConfigurationError
    names every bad key (``problems``: one each)."""
    found: list[ConfigurationError] = []
    for name in options:
        if name in RENAMED:
            problem = f"was renamed: use the core's delivery option {RENAMED[name]!r}"
            found.append(_invalid(name, problem))
        elif name not in KNOWN_OPTIONS:
            found.append(_invalid(str(name), "unknown option"))
    try:
        key = _key(options)
    except ConfigurationError as exc:
        found.append(exc)
    hosts = [name for name in ("endpoint", "environment", "rest_host") if name in options]
    if len(hosts) > 1:
        problem = f"give only one of 'endpoint', 'environment', 'rest_host' ({hosts})"
        found.append(_invalid(hosts[1], problem))
    given: dict[str, Any] = {}
    for name, (valid, problem) in _RULES.items():
        given[name] = value = options.get(name)
        if value is not None and not valid(value):
            found.append(_invalid(name, problem))
            given[name] = None  # reported: not checked again below
    found += _hosts_problems(given)
    if given["client_id"] == "*":
        found.append(_invalid("client_id", "'*' is reserved and cannot publish"))
    if given["tls"] is False:
        found.append(_invalid("tls", "Ably refuses API-key (Basic) authentication without TLS"))
    if found:
        del options  # out of this frame's locals, which tracebacks keep
        raise ConfigurationError.combine(found)
    return AblySettings(
        key=key,
        client_id=given["client_id"],
        endpoint=given["endpoint"] or given["environment"] or given["rest_host"],
        port=given["port"],
        tls_port=given["tls_port"],
        http_open_timeout=_float(given["http_open_timeout"] or given["timeout"]),
        http_request_timeout=_float(given["http_request_timeout"] or given["timeout"]),
        fallback_hosts=None if given["fallback_hosts"] is None else tuple(given["fallback_hosts"]),
        use_binary_protocol=given["use_binary_protocol"] is not False,
        max_payload_bytes=given["max_payload_bytes"] or DEFAULT_MAX_PAYLOAD_BYTES,
        token_ttl=given["token_ttl"] or DEFAULT_TOKEN_TTL,
    )
