"""What a driver declares (its features, its TLS option) matches what it implements and does."""

from __future__ import annotations

import inspect
import json

import pytest

from broadcasting import Broadcaster, ConfigurationError, InputError, NotSupportedError
from broadcasting._driver import FEATURE_METHODS
from broadcasting.plugin import Driver, Feature
from broadcasting.testing._suite.auth import socket_ids
from broadcasting.testing._suite.run import EVENT, MODES, Run, arrived_intact, marker
from broadcasting.web import client_config


def implemented(cls: type[Driver], method: str) -> list[str]:
    """Which of ``method`` and its ``a``-twin ``cls`` implements itself."""
    return [
        name
        for name in (method, "a" + method)
        if hasattr(Driver, name) and getattr(cls, name, None) is not getattr(Driver, name)
    ]


class DeclaredTests:
    """``Driver.features`` and ``ssl_option`` are declarations the kit holds the driver to."""

    def test_features_are_declared_not_guessed(self, conformance: Run) -> None:
        """Each declared Feature's methods are implemented, and no feature's methods are
        implemented without declaring it (the core would never call them)."""
        run = conformance
        cls = type(run.driver)
        declared = run.driver.features
        assert isinstance(declared, frozenset) and all(isinstance(f, Feature) for f in declared), (
            f"{cls.__name__}.features must be a frozenset of Feature, not {declared!r}"
        )
        for feature, methods in FEATURE_METHODS.items():
            for method in methods:
                own = implemented(cls, method)
                if feature in declared:
                    assert own, (
                        f"{cls.__name__} declares Feature.{feature.name} but implements "
                        f"neither {method}() nor a{method}()"
                    )
                else:
                    assert not own, (
                        f"{cls.__name__} implements {own[0]}() but does not declare "
                        f"Feature.{feature.name}: the core never calls it (add it to features)"
                    )

    def test_async_twins_are_coroutines(self, conformance: Run) -> None:
        """``send``, ``check``, ``close``... are plain methods and their ``a``-twins
        (``asend``, ``acheck``, ``aclose``...) coroutines, as the core calls and awaits them."""
        run = conformance
        cls = type(run.driver)
        for twin in [n for n in dir(Driver) if inspect.iscoroutinefunction(getattr(Driver, n))]:
            plain = twin[1:]
            if twin in implemented(cls, twin):
                assert inspect.iscoroutinefunction(getattr(cls, twin)), (
                    f"{cls.__name__}.{twin}() is not a coroutine function: the core awaits it; "
                    f"write `async def {twin}`, or implement the blocking {plain}() instead"
                )
            if hasattr(Driver, plain) and plain in implemented(cls, plain):
                assert not inspect.iscoroutinefunction(getattr(cls, plain)), (
                    f"{cls.__name__}.{plain}() is a coroutine function, but the core calls it "
                    f"without awaiting it; name it {twin}() (the core runs it for sync callers)"
                )

    def test_client_config_is_given_or_not_supported(self, conformance: Run) -> None:
        """A driver with ``client_config()`` gives the browser's config (a JSON-ready dict
        naming its ``client``) with no declared secret in it; without one, the page's
        config is NotSupportedError (501)."""
        run = conformance
        if not implemented(type(run.driver), "client_config"):
            run.expect_not_supported("client_config()", client_config, run.broadcast)
            return
        config = client_config(run.broadcast)
        assert isinstance(config, dict) and isinstance(config.get("client"), str), (
            f"client_config() must name the browser's client library as 'client': {config!r}"
        )
        text = json.dumps(config, allow_nan=False)
        run.assert_no_secrets([text], "the browser's client config (every page shows it)")

    def test_ssl_option_is_declared_or_refused(self, conformance: Run) -> None:
        """``Broadcaster.ssl()`` sets the driver's declared ``ssl_option``, or is refused."""
        run = conformance
        option = run.driver.ssl_option
        if option is None:
            with pytest.raises(NotSupportedError):
                run.broadcaster.ssl(True)
            return
        built = 0
        for enabled in (True, False):
            named: str | None = None
            try:
                variant = run.broadcaster.ssl(enabled)
            except ConfigurationError as exc:  # this configuration may not allow it
                named = exc.key or "?"
            if named is not None:
                assert named == option, f"ssl({enabled}) failed naming {named!r}, not {option!r}"
                continue
            assert isinstance(variant, Broadcaster), variant
            assert type(variant.driver) is type(run.driver)
            assert variant.options[option] is enabled, (
                f"ssl({enabled}) should set the {option!r} option the driver declares"
            )
            built += 1
        assert built, f"the driver declares ssl_option={option!r} but accepts it neither way"

    @pytest.mark.parametrize("mode", MODES)
    def test_socket_id(self, conformance: Run, mode: str) -> None:
        """socket_id excludes the sender's connection with Feature.EXCLUDE_SENDER, else
        is refused before any request.

        Declared: a publish with ``socket_id_sample`` reaches the driver and the
        observer; if the observer offers ``socket_id()``, a publish with its own id
        must not reach it, while a marker published next, without one, does.
        """
        run = conformance
        sample, _ = socket_ids(run)
        channel = run.channel("socket")
        data = {"marker": marker()}
        run.watch(channel)
        if Feature.EXCLUDE_SENDER not in run.driver.features:
            run.refused(InputError, channel, mode, channel, data, socket_id=sample)
            return
        own = run.own_socket_id()
        assert own != sample, (
            f"the observer's socket_id() is {own!r}, the same as socket_id_sample: "
            "set socket_id_sample to an id that is not the observer's connection"
        )
        receipt = run.publish(mode, channel, data, EVENT, socket_id=sample)
        message = run.last_message()
        assert message.socket_id == sample
        run.check_receipt(receipt, EVENT, [channel], message)
        # the observer is not the excluded connection, so it still receives it
        run.expect_delivered([channel], data, EVENT)
        if own is None:
            return  # the observer has no connection of its own: pass-through is all we can see
        # the observer's own connection is the sender: it must not get the message,
        # while a marker published afterwards (no socket_id) does arrive
        excluded = {"excluded": marker()}
        receipt = run.publish(mode, channel, excluded, EVENT, socket_id=own)
        message = run.last_message()
        assert message.socket_id == own
        run.check_receipt(receipt, EVENT, [channel], message)
        after = {"after-excluded": marker()}
        run.check_receipt(run.publish(mode, channel, after, EVENT), EVENT, [channel])
        run.expect_delivered([channel], after, EVENT)
        # deliveries arrive in publish order: had the sender got it, it is here by now
        seen = run.seen(channel, 2)
        leaked = [d for d in seen if arrived_intact(d, excluded)]
        assert not leaked, (
            f"published with socket_id={own!r} (the observer's own connection), yet the "
            f"observer received it on {channel!r}: the sender's connection must be excluded "
            f"(all deliveries on that channel: {seen!r})"
        )
