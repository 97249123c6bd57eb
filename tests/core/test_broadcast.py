"""The Broadcast object: drivers by name or class, lifecycle, repr, secrets."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from collections.abc import Mapping
from typing import Any

import pytest

from broadcasting import Broadcast, ConfigurationError, PublishError, QueryError, Receipt
from broadcasting.drivers.log import BroadcastLogDriver
from broadcasting.plugin import Driver, Message, Secret

SECRET = "sk_live_do-not-leak-9f8e7d"


class Vault(Driver):
    """A driver holding a secret, that records close calls."""

    name = "vault"

    def __init__(self, token: Secret, region: str) -> None:
        self.token = token
        self.region = region
        self.closed = 0
        self.aclosed = 0

    @classmethod
    def from_config(cls, options: Mapping[str, Any]) -> Vault:
        token = options.get("token")  # the core hands secret-named options over as Secrets
        if not isinstance(token, Secret) or len(token.reveal()) < 8:
            raise ConfigurationError(cls.name, "token", "must be a string of 8+ characters")
        return cls(token, str(options.get("region", "eu")))

    def publish(self, message: Message) -> Receipt:
        if message.event == "fail":
            raise PublishError("upstream refused", driver=self.name, status=503, retryable=True)
        return Receipt(self.name, message.event, message.channels, message.id)

    def close(self) -> None:
        self.closed += 1

    async def aclose(self) -> None:
        self.aclosed += 1

    def __repr__(self) -> str:
        return f"<Vault region={self.region!r} token={self.token!r}>"


CONFIG = {"DRIVER": "vault", "DRIVERS": {"vault": {"token": SECRET, "region": "us"}}}


def test_driver_by_class_uses_the_configured_options() -> None:
    broadcast = Broadcast(CONFIG)
    vault = broadcast.driver(Vault)
    assert vault.driver.region == "us"
    assert broadcast.driver(Vault) is vault
    assert vault.channel("c", "m").driver == "vault"
    assert repr(vault) == "<Broadcaster 'vault': Vault>"


def test_nothing_secret_in_reprs_errors_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    broadcast = Broadcast(CONFIG)
    vault = broadcast.driver(Vault)
    texts = [repr(broadcast), str(broadcast), repr(vault), str(vault), f"{vault.driver.token}"]
    with pytest.raises(PublishError) as info:
        vault.channel("c", "m", "fail")
    texts.append(str(info.value))
    with pytest.raises(ConfigurationError) as config_info:
        Broadcast({"DRIVERS": {"vault": {"token": SECRET[:5]}}}).driver(Vault)
    texts.append(str(config_info.value))
    texts.extend(record.getMessage() for record in caplog.records)
    assert repr(broadcast) == "<Broadcast driver='vault'>"
    assert vault.driver.token.reveal() == SECRET
    for text in texts:
        assert SECRET not in text
        assert SECRET[:5] not in text


def test_publish_error_says_everything_but_secrets() -> None:
    error = PublishError(
        "partial fan-out",
        driver="x",
        status=500,
        code=50000,
        retryable=True,
        delivered=["a"],
        failed=["b", "c"],
    )
    assert str(error) == (
        "partial fan-out (driver='x', kind=unavailable, status=500, code=50000, "
        "retryable=True, delivered=['a'], failed=['b', 'c'])"
    )


@pytest.mark.parametrize(
    ("status", "retryable", "kind"),
    [
        (401, False, "auth"),
        (403, False, "permission"),
        (429, True, "limit"),
        (503, True, "unavailable"),
        (408, True, "unavailable"),
        (400, False, "invalid"),
        (None, True, "unavailable"),  # no answer: refused, DNS, a timeout
        (None, False, "other"),  # no answer and no point trying again: a bad certificate
    ],
)
def test_an_http_status_says_the_kind_of_a_service_error(
    status: int | None, retryable: bool, kind: str
) -> None:
    assert PublishError("x", driver="d", status=status, retryable=retryable).kind == kind
    assert QueryError("x", driver="d", status=status, retryable=retryable).kind == kind


def test_a_driver_that_is_not_http_names_the_kind_itself() -> None:
    error = PublishError("NOAUTH", driver="redis", kind="auth", code="NOAUTH")
    assert (error.kind, error.status) == ("auth", None)
    with pytest.raises(ValueError, match="kind must be one of"):
        QueryError("x", driver="d", kind="nope")  # type: ignore[arg-type]


def test_close_closes_every_connection_and_reconnects_on_demand() -> None:
    broadcast = Broadcast(CONFIG)
    first = broadcast.driver(Vault)
    broadcast.close()
    broadcast.close()  # idempotent
    assert first.driver.closed == 2
    # the same driver object stays usable (it reconnects) and is closed again next time
    assert broadcast.driver(Vault) is first
    assert first.channel("c", "m").driver == "vault"
    broadcast.close()
    assert first.driver.closed == 3


async def test_async_context_manager_acloses() -> None:
    async with Broadcast(CONFIG) as broadcast:
        vault = broadcast.driver(Vault)
        await vault.achannel("c", "m")
    assert (vault.driver.aclosed, vault.driver.closed) == (1, 0)


def test_context_manager_closes() -> None:
    with Broadcast(CONFIG) as broadcast:
        vault = broadcast.driver(Vault).driver
    assert vault.closed == 1


def test_with_options_returns_a_cached_variant_closed_with_the_rest() -> None:
    broadcast = Broadcast(CONFIG)
    vault = broadcast.driver(Vault)
    eu = vault.with_options(region="eu")
    assert (eu.driver.region, vault.driver.region) == ("eu", "us")
    assert vault.with_options(region="eu") is eu
    assert eu.channel("c", "m").driver == "vault"
    broadcast.close()
    assert (vault.driver.closed, eu.driver.closed) == (1, 1)


def test_log_driver_writes_to_the_broadcasting_logger(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="broadcasting")
    Broadcast().channel(["orders", "admin"], {"order": 42}, "shipped")
    assert [(r.name, r.levelno, r.getMessage()) for r in caplog.records] == [
        ("broadcasting", logging.INFO, "broadcast 'shipped' on orders, admin: {\"order\":42}")
    ]


def test_log_driver_options() -> None:
    driver = (
        Broadcast({"DRIVERS": {"log": {"level": "warning", "logger": "app.events"}}})
        .driver(BroadcastLogDriver)
        .driver
    )
    assert (driver.level, driver.logger.name) == (logging.WARNING, "app.events")
    with pytest.raises(ConfigurationError, match="'level'"):
        Broadcast({"DRIVERS": {"log": {"level": ["x"]}}}).driver("log")


def test_driver_takes_a_name_or_a_class_only() -> None:
    with pytest.raises(TypeError):
        Broadcast().driver(3)  # type: ignore[call-overload]


def test_receipt_text() -> None:
    receipt = Receipt("pusher", "shipped", ("a", "b"), "id1", ("e1",), 2)
    assert str(receipt) == "pusher: 'shipped' -> a, b (id id1, 2 requests)"


def test_publish_error_shortens_long_channel_lists_but_keeps_them_all() -> None:
    channels = [f"c{i}" for i in range(250)]
    error = PublishError("partial", driver="x", delivered=channels[:100], failed=channels[100:])
    assert len(error.failed) == 150
    assert "and 90 more" in str(error)
    assert "and 140 more" in str(error)


def _script(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


def test_the_default_log_driver_is_visible_in_a_plain_script() -> None:
    done = _script(
        """
        from broadcasting import Broadcast
        Broadcast().channel("orders", {"id": 42}, "shipped")
        """
    )
    assert done.stderr == "broadcasting: broadcast 'shipped' on orders: {\"id\":42}\n"


def test_the_log_driver_follows_logging_once_it_is_configured() -> None:
    done = _script(
        """
        import logging, sys
        logging.basicConfig(stream=sys.stdout, level=logging.WARNING, format="%(message)s")
        from broadcasting import Broadcast
        Broadcast().channel("quiet", "below WARNING: filtered")
        logging.getLogger("broadcasting").setLevel(logging.INFO)
        Broadcast().channel("loud", "now shown")
        """
    )
    assert done.stderr == ""
    assert done.stdout == "broadcast 'base-event' on loud: now shown\n"


class Keyed(Driver):
    """Remembers its key and whether it was closed (what with_options must keep apart)."""

    name = "keyed"
    closed = 0

    def __init__(self, key: Secret) -> None:
        self.key = key

    @classmethod
    def from_config(cls, options: Mapping[str, Any]) -> Keyed:
        return cls(options["key"])

    def publish(self, message: Message) -> Receipt:
        return Receipt(self.name, message.event, message.channels, message.id)

    def close(self) -> None:
        self.closed += 1


def test_with_options_keys_variants_by_value_secrets_included() -> None:
    base = Broadcast({"DRIVER": "keyed", "DRIVERS": {"keyed": {"key": Secret("appA")}}})
    a = base.driver(Keyed)
    b = a.with_options(key=Secret("appB"))
    c = a.with_options(key=Secret("appC"))
    keys = (a.driver.key.reveal(), b.driver.key.reveal(), c.driver.key.reveal())
    assert keys == ("appA", "appB", "appC")
    assert a.with_options(key=Secret("appB")) is b  # same value: the same driver, reused


def test_variants_are_bounded_and_the_evicted_one_is_closed_once_let_go() -> None:
    from broadcasting._broadcast import MAX_VARIANTS

    base = Broadcast({"DRIVER": "keyed", "DRIVERS": {"keyed": {"key": Secret("k0")}}})
    first = base.driver(Keyed)
    made = [first.with_options(key=Secret(f"k{n}")) for n in range(1, MAX_VARIANTS + 1)]
    assert len(base._variants) == MAX_VARIANTS  # one more than fits was made
    assert first not in base._variants.values()  # the least recently used
    # still held (by a publish under way, say): closed once let go of, not under it
    # (tests/fork/test_review_s36_evicted_in_flight.py)
    assert not any(d.driver.closed for d in [first, *made])
    evicted = first.driver
    del first
    assert evicted.closed
    assert not any(d.driver.closed for d in made)


def test_close_reports_every_drivers_error() -> None:
    from broadcasting import CloseError

    class Stuck(Driver):
        name = "stuck"

        def publish(self, message: Message) -> Receipt:
            return Receipt(self.name, message.event, message.channels, message.id)

        def close(self) -> None:
            raise OSError(f"cannot close {self.marker}")

        @classmethod
        def from_config(cls, options: Mapping[str, Any]) -> Stuck:
            driver = cls()
            driver.marker = options.get("marker", "first")  # type: ignore[attr-defined]
            return driver

    broadcast = Broadcast({"DRIVER": "stuck"})
    broadcast.driver(Stuck).with_options(marker="second")
    with pytest.raises(CloseError) as info:
        broadcast.close()
    assert [str(e) for e in info.value.errors] == ["cannot close first", "cannot close second"]
    assert "2 drivers failed to close" in str(info.value)


def test_the_public_methods_type_hints_resolve_at_runtime() -> None:
    # tools that read annotations at runtime (FastAPI, pydantic, sphinx) see real types
    import typing

    from broadcasting import Broadcaster

    public = [getattr(Broadcast, n) for n in dir(Broadcast) if not n.startswith("_")]
    public += [getattr(Broadcaster, n) for n in ("channel", "achannel", "check", "acheck")]
    public += [getattr(Broadcaster, n) for n in ("close", "aclose", "with_options", "ssl")]
    methods = [m for m in public if callable(m)]
    assert len(methods) > 25
    for method in methods:
        assert typing.get_type_hints(method)["return"] is not None, method
