"""Reading the ``pusher`` entry of ``DRIVERS`` into checked, typed settings."""

from __future__ import annotations

import base64
import ipaddress
import re
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass
from typing import Any, TypeGuard, TypeVar

from broadcasting import ConfigurationError
from broadcasting.plugin import Secret
from broadcasting_pusher._hosts import Node

NAME = "pusher"
_T = TypeVar("_T")

#: Every option the driver reads (the core reads the delivery options before it sees the rest).
KNOWN_OPTIONS = frozenset(
    {"app_id", "client", "key", "secret", "cluster", "host", "hosts", "port", "ssl", "timeout"}
    | {"encryption_master_key_base64", "max_payload_bytes", "max_connections", "max_batch_events"}
)

DEFAULT_MAX_PAYLOAD_BYTES = 10 * 1024
DEFAULT_TIMEOUT = 5.0
MAX_TIMEOUT = 86_400  #: a day: far longer than any answer, and within what a socket can wait
DEFAULT_MAX_CONNECTIONS = 10
DEFAULT_MAX_BATCH_EVENTS = 10  #: per ``/batch_events`` request on Pusher's hosted clusters
#: The most ``max_batch_events`` may be: soketi and Reverb set no ceiling, but a request of
#: more events holds more of them in one outcome (a lost answer leaves them all unknown)
MAX_BATCH_EVENTS_LIMIT = 1000

_DIGITS = re.compile(r"[0-9]+")
_MAX_LABEL = 63  #: characters of one dot-separated part of a host name
_CLUSTER = re.compile(r"[a-z0-9][a-z0-9-]*")
_HOST = re.compile(r"[A-Za-z0-9._\-]+|\[[0-9A-Fa-f:.]+\]")
#: One ``hosts`` entry: ``host``, ``host:port``, ``[v6]`` or ``[v6]:port``.
_ENTRY = re.compile(r"(?P<host>[A-Za-z0-9._\-]+|\[[0-9A-Fa-f:.]+\])(?::(?P<port>[0-9]{1,5}))?")
#: What an entry may be shown as in an error (a host-like text, nothing that could be a URL
#: with credentials); anything else is named by its position only.
_SHOWABLE = re.compile(r"[A-Za-z0-9._:\[\]\-]{1,100}")


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
    #: Events one ``/batch_events`` request may carry (the server's limit: 10 on Pusher's).
    max_batch_events: int = DEFAULT_MAX_BATCH_EVENTS
    #: The ``hosts`` option's nodes (empty without it); ``host`` and ``port`` are the first's.
    hosts: tuple[Node, ...] = ()

    @property
    def scheme(self) -> str:
        return "https" if self.ssl else "http"

    @property
    def base_url(self) -> str:
        """Where requests go, e.g. ``https://api-eu.pusher.com:443`` (the first node's)."""
        return f"{self.scheme}://{self.host}:{self.port}"

    @property
    def nodes(self) -> tuple[Node, ...]:
        """Every server requests may go to: the ``hosts``, or the one ``host``."""
        return self.hosts or (Node(self.host, self.port),)


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _positive_int(options: Mapping[str, Any], key: str, default: int) -> int:
    value = options.get(key, default)
    if not _is_int(value) or value < 1:
        raise ConfigurationError(NAME, key, "must be an int >= 1")
    return value


def _max_batch_events(options: Mapping[str, Any]) -> int:
    value = options.get("max_batch_events", DEFAULT_MAX_BATCH_EVENTS)
    if not _is_int(value) or not 1 <= value <= MAX_BATCH_EVENTS_LIMIT:
        raise ConfigurationError(
            NAME,
            "max_batch_events",
            f"must be an int from 1 to {MAX_BATCH_EVENTS_LIMIT:,}: the events one /batch_events "
            f"request may carry, as the server allows (Pusher's clusters: "
            f"{DEFAULT_MAX_BATCH_EVENTS}; soketi: the app's maxEventBatchSize)",
        )
    return value


def _text(options: Mapping[str, Any], key: str, what: str) -> str | None:
    value = options.get(key)
    if value is None:
        return None
    value = value.reveal() if isinstance(value, Secret) else value
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError(NAME, key, f"must be {what} (a non-empty string)")
    if value != value.strip():
        raise ConfigurationError(NAME, key, "has leading or trailing whitespace")
    return value


def _master_key_problem(text: object) -> str | None:
    """What is wrong with ``text`` as a master key (never quoting it), or None. The pusher SDK
    takes only base64 that its 32 bytes encode back to, letter for letter (a last character
    with bits set that decode to nothing is refused, though it decodes to the same bytes)."""
    if isinstance(text, str):
        with suppress(ValueError):  # not ASCII, not base64
            decoded = base64.b64decode(text.encode("ascii"), validate=True)
            if len(decoded) != 32:
                return "must be base64 text that decodes to exactly 32 bytes"
            if base64.b64encode(decoded) != text.encode("ascii"):
                return (
                    "decodes to 32 bytes but is not their canonical base64 (encoded again, "
                    "they give other text: padding bits set, or padding to spare), which the "
                    "pusher SDK refuses; give the key encoded again: "
                    "base64.b64encode(base64.b64decode(key)).decode()"
                )
            return None
    return "must be base64 text that decodes to exactly 32 bytes"


def _master_key(options: Mapping[str, Any]) -> Secret | None:
    raw = options.get("encryption_master_key_base64")
    if raw is None:
        return None
    # revealed only in the calls' frames, which end before any error is raised
    problem = _master_key_problem(raw.reveal() if isinstance(raw, Secret) else raw)
    if problem is None:
        return Secret(raw.reveal() if isinstance(raw, Secret) else raw)
    del raw, options  # out of this frame's locals, which the error's traceback keeps
    raise ConfigurationError(NAME, "encryption_master_key_base64", problem)


def _host_problem(host: str) -> str | None:
    """What is wrong with ``host`` (a name, an IPv4 address or ``[v6]``), or None. Refused here
    is what a request would only meet when it is sent, as an error of no kind the core knows
    ("may have been delivered"), and on one path only: a name with an empty label (``a..b``)
    or one longer than 63 characters, which makes ``getaddrinfo`` raise UnicodeError; and an
    address aiohttp cannot take in a URL: brackets around no IPv6 address (``[1:2]``), digits
    and dots that are not four numbers from 0 to 255 (``127.1``, ``2130706433``: the sync
    path's resolver would take them as legacy forms of an address, aiohttp refuses them)."""
    if host.startswith("["):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            return "is not an IPv6 address in brackets"
        return None
    if host.replace(".", "").isdigit():  # what aiohttp takes for an IPv4 address
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            return "is not an IPv4 address: write it as four numbers from 0 to 255 (a.b.c.d)"
        return None
    try:
        host.encode("idna")  # what socket.getaddrinfo does with a name
    except UnicodeError:
        return "is not a host name: each of its dot-separated parts must have 1 to 63 characters"
    return None


#: The options whose values are secrets: ``encryption_master_key`` is no option of this
#: driver (an unknown one), but is the pusher SDK's name for the raw key, so may be given.
_SECRET_OPTIONS = ("encryption_master_key_base64", "encryption_master_key")


def _secret_texts(options: Mapping[str, Any], secret: str) -> tuple[str, ...]:
    """The secret values given in ``options``, ``secret`` first (``""`` when it is missing or
    wrong); a value that is no text at all is ``""`` too, which no entry is shown beside."""
    texts = [secret]
    for key in _SECRET_OPTIONS:
        value = options.get(key)
        if value is not None:
            value = value.reveal() if isinstance(value, Secret) else value
            texts.append(value if isinstance(value, str) else "")
    return tuple(texts)


def _entry_name(index: int, entry: object, secrets: tuple[str, ...]) -> str:
    """``entry 2 ('soketi-2:6001')``: the entry as written if it looks like a host, else only
    its position. An entry that holds any secret value of the options (a base64 key with or
    without its ``=`` padding), or is a part of one, is never shown, even if it was put there
    by mistake."""
    shown = (
        isinstance(entry, str)
        and _SHOWABLE.fullmatch(entry)
        and not any(text.rstrip("=") in entry or entry in text for text in secrets)
    )
    return f"entry {index}" + (f" ({entry!r})" if shown else "")


def _hosts(
    options: Mapping[str, Any], default_port: int, secrets: tuple[str, ...]
) -> tuple[Node, ...]:
    """The ``hosts`` option: a list of ``host``, ``host:port`` or ``[v6]:port`` entries."""
    raw = options.get("hosts")
    if raw is None:
        return ()
    for other in ("host", "cluster"):
        if options.get(other) is not None:
            raise ConfigurationError(
                NAME,
                "hosts",
                f"conflicts with {other!r}: give 'hosts' (the nodes of your own cluster) or "
                f"{other!r}, not both",
            )
    if not isinstance(raw, (list, tuple)):
        raise ConfigurationError(
            NAME,
            "hosts",
            "must be a list of nodes such as ['soketi-1:6001', 'soketi-2:6001'], "
            f"not a {type(raw).__name__}",
        )
    if not raw:
        raise ConfigurationError(NAME, "hosts", "is empty: list at least one node")
    nodes: dict[tuple[str, int], tuple[int, Node]] = {}
    for index, entry in enumerate(raw):
        name = _entry_name(index, entry, secrets)
        match = _ENTRY.fullmatch(entry) if isinstance(entry, str) else None
        port = int(match["port"]) if match and match["port"] else default_port
        if not match or not 0 < port < 65536:
            raise ConfigurationError(
                NAME,
                "hosts",
                f"{name} is not a node: write 'host', 'host:port' or '[v6 address]:port' "
                "(no scheme or path; a port from 1 to 65535)",
            )
        host = match["host"]
        problem = _host_problem(host)
        if problem is not None:
            raise ConfigurationError(NAME, "hosts", f"{name} {problem}")
        if host.startswith("["):  # one spelling per address, for the duplicate check
            host = f"[{ipaddress.IPv6Address(host[1:-1]).compressed}]"
        key = (host.lower(), port)
        if key in nodes:
            first = nodes[key][0]
            raise ConfigurationError(NAME, "hosts", f"{name} names the same node as entry {first}")
        nodes[key] = (index, Node(host, port))
    return tuple(node for _, node in nodes.values())


def _hosted(cluster: str | None) -> str:
    """Pusher's own API host for ``cluster``."""
    return f"api-{cluster}.pusher.com" if cluster else "api.pusherapp.com"


def parse_settings(options: Mapping[str, Any]) -> PusherSettings:
    """Check ``options``; a ConfigurationError names every bad key (``problems``: one each)."""
    if not isinstance(options, Mapping):
        raise ConfigurationError(NAME, None, "its options must be a mapping")
    found: list[ConfigurationError] = []

    def checked(read: Callable[[], _T], instead: _T) -> _T:
        """What ``read`` returns, or ``instead`` once its problem is kept in ``found``."""
        try:
            return read()
        except ConfigurationError as exc:
            found.append(exc)
            return instead

    def problem(key: str, text: str) -> None:
        found.append(ConfigurationError(NAME, key, text))

    def credential(key: str, what: str) -> str | None:
        """A text option (``None``: not given); ``""`` once its problem is kept: it is
        wrong, which is not missing."""
        try:
            return _text(options, key, what)
        except ConfigurationError as exc:
            found.append(exc)
            return ""

    for name in options:
        if name == "batch_events":  # its name in earlier versions
            problem(name, "was replaced by the core's 'batch' option")
        elif name not in KNOWN_OPTIONS:
            known = ", ".join(sorted(KNOWN_OPTIONS))
            problem(str(name), f"unknown option (known: {known}, and the delivery options)")
    given_id = options.get("app_id")
    app_id = ""
    if given_id is None or given_id == "":
        problem("app_id", "is required (your Pusher app's numeric id)")
    else:
        app_id = str(given_id).strip() if _is_int(given_id) or isinstance(given_id, str) else ""
        if not _DIGITS.fullmatch(app_id):
            problem(
                "app_id",
                "must be numeric: the Pusher HTTP API and the pusher SDK only accept an app id "
                "made of digits (e.g. '1234567'); self-hosted servers such as soketi need one "
                "configured too",
            )
    key, client = credential("key", "the app key"), credential("client", "the app key")
    if key and client and key != client:
        problem("client", "conflicts with 'key' ('client' is the old name of 'key'; give one)")
    if key is None and client is None:
        problem("key", "is required (the app key; 'client' also works)")
    key = key or client
    secret = credential("secret", "the app secret")
    if secret is None:
        problem("secret", "is required (the app secret)")
    ssl = options.get("ssl", True)
    if not isinstance(ssl, bool):
        problem("ssl", "must be True or False")
        ssl = True
    host = checked(lambda: _text(options, "host", "a host name"), None)
    cluster = checked(
        lambda: _text(options, "cluster", "a cluster name such as 'eu' or 'mt1'"), None
    )
    if cluster is not None and not _CLUSTER.fullmatch(cluster):
        problem("cluster", "must be a cluster name such as 'eu' or 'mt1'")
    elif cluster is not None and _host_problem(_hosted(cluster)) is not None:
        problem(
            "cluster",
            f"is too long: api-<cluster>.pusher.com needs a cluster of at most "
            f"{_MAX_LABEL - len('api-')} characters",
        )
    if host is not None and not _HOST.fullmatch(host):
        problem("host", "must be a bare host name or address (no scheme, port or path)")
    elif host is not None and (wrong := _host_problem(host)) is not None:
        problem("host", wrong)
    port = options.get("port")
    if port is not None and (not _is_int(port) or not 0 < port < 65536):
        problem("port", "must be an int from 1 to 65535")
        port = None
    timeout = options.get("timeout", DEFAULT_TIMEOUT)
    if (
        not isinstance(timeout, (int, float))
        or isinstance(timeout, bool)
        or not 0 < timeout <= MAX_TIMEOUT  # NaN too; inf or 1e300 no socket can wait
    ):
        problem("timeout", f"must be a number of seconds > 0 and at most {MAX_TIMEOUT:,} (a day)")
    port = port or (443 if ssl else 80)
    # an entry is shown only if it holds no secret value: none is while the secret is unknown
    hosts: tuple[Node, ...] = checked(
        lambda: _hosts(options, port, _secret_texts(options, secret or "")), ()
    )
    master_key = checked(lambda: _master_key(options), None)
    max_payload_bytes = checked(
        lambda: _positive_int(options, "max_payload_bytes", DEFAULT_MAX_PAYLOAD_BYTES), 0
    )
    max_connections = checked(
        lambda: _positive_int(options, "max_connections", DEFAULT_MAX_CONNECTIONS), 0
    )
    max_batch_events = checked(lambda: _max_batch_events(options), 0)
    if found:
        del options, secret, key, client  # out of this frame's locals, which tracebacks keep
        raise ConfigurationError.combine(found)
    assert key and secret  # found holds their problem otherwise
    return PusherSettings(
        app_id=app_id,
        key=key,
        secret=Secret(secret),
        host=hosts[0].host if hosts else host or _hosted(cluster),
        port=hosts[0].port if hosts else port,
        ssl=ssl,
        cluster=cluster,
        timeout=float(timeout),
        encryption_master_key=master_key,
        max_payload_bytes=max_payload_bytes,
        max_connections=max_connections,
        max_batch_events=max_batch_events,
        hosts=hosts,
    )
