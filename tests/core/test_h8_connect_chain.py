"""A wrong option's ConfigurationError, as ``Broadcast`` raises it, holds no secret in any
frame of its traceback nor of the exceptions chained to it (``__cause__``, ``__context__``,
each problem's), walked as an error tracker or a debugger walks them: the pusher and ably
drivers with wrong options and a secret set, connected by name, by class, by
``with_options()`` and on first publish.

``Broadcast._connect`` leaves out the frames below it (the driver's checks); the frames
above it are the caller's, and ``with_options()``'s own, which held the options given as
text: it wraps them first. An exception the caller was handling stays the error's
``__context__`` with its traceback whole: no secret of the library's is in it, and it points
at the caller's line.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pytest

from broadcasting import Broadcast, ConfigurationError
from broadcasting.plugin import Secret
from broadcasting.testing._suite.leaks import chain, error_texts, held_in_frames

SECRET = "h8-chain-pusher-secret-0123456789"
MASTER = "h8-chain-master-key-not-base64!!"
ABLY_KEY = "appid.keyid:h8-chain-ably-secret-0123"
SECRETS = [SECRET, MASTER, ABLY_KEY, ABLY_KEY.partition(":")[2]]

PUSHER = {"app_id": "1234567", "key": "app-key", "secret": SECRET}
#: Wrong pusher options, the secrets among them (mistyped, wrapped or not), and whether a
#: secret is put in an option that is not secret (``misplaced``).
PUSHER_WRONG: list[tuple[dict[str, Any], bool]] = [
    ({"secret": " " + SECRET}, False),
    ({"secret": Secret(SECRET + "\n"), "port": "port-text"}, False),
    ({"encryption_master_key_base64": MASTER}, False),
    ({"encryption_master_key_base64": Secret(MASTER), "ssl": "yes"}, False),
    ({"secret": "\udcff" + SECRET, "retries": -1, "batch": "no"}, False),
    ({"hosts": [f"https://{SECRET}@node:6001"], "app_id": "x"}, True),
    ({"host": f"{SECRET}.example/path", "cluster": SECRET}, True),
    ({"client": "other-key", "max_batch_events": 0, "batch_linger": SECRET}, True),
]
ABLY = {"key": ABLY_KEY}
ABLY_WRONG: list[tuple[dict[str, Any], bool]] = [
    ({"key": " " + ABLY_KEY + " x"}, False),
    ({"key": Secret(ABLY_KEY + "\u00e9"), "tls": "yes"}, False),
    ({"secret": ABLY_KEY, "port": "port-text"}, False),
    ({"key": "\udcff" + ABLY_KEY, "retries": "often", "token_ttl": 1}, False),
    ({"fallback_hosts": [f"https://{ABLY_KEY}/x"]}, True),
    ({"endpoint": f"https://{ABLY_KEY}", "batch_linger": ABLY_KEY}, True),
]
CASES = [("pusher", PUSHER, *case) for case in PUSHER_WRONG] + [
    ("ably", ABLY, *case) for case in ABLY_WRONG
]


def _by_name(config: Mapping[str, Any], name: str, wrong: Mapping[str, Any]) -> None:
    with Broadcast(config) as broadcast:
        broadcast.driver(name)


def _by_class(config: Mapping[str, Any], name: str, wrong: Mapping[str, Any]) -> None:
    with Broadcast({"DRIVERS": config["DRIVERS"]}) as broadcast:
        cls = type(Broadcast({"DRIVER": name, "DRIVERS": {name: BASE[name]}}).driver().driver)
        broadcast.driver(cls)


def _with_options(config: Mapping[str, Any], name: str, wrong: Mapping[str, Any]) -> None:
    with Broadcast({"DRIVER": name, "DRIVERS": {name: BASE[name]}}) as broadcast:
        broadcast.driver().with_options(**wrong)


def _on_publish(config: Mapping[str, Any], name: str, wrong: Mapping[str, Any]) -> None:
    with Broadcast(config) as broadcast:
        broadcast.channel("orders", {"id": 1}, "shipped")


BASE: dict[str, Mapping[str, Any]] = {"pusher": PUSHER, "ably": ABLY}
PATHS: dict[str, Callable[[Mapping[str, Any], str, Mapping[str, Any]], None]] = {
    "by name": _by_name,
    "by class": _by_class,
    "with_options": _with_options,
    "on publish": _on_publish,
}


def raised(path: str, name: str, base: Mapping[str, Any], wrong: Mapping[str, Any]) -> Any:
    """The ConfigurationError the path raises, without this file's frames (they hold the
    options as the test wrote them): what the library's frames keep is checked."""
    config = {"DRIVER": name, "DRIVERS": {name: {**base, **wrong}}}
    with pytest.raises(ConfigurationError) as info:
        PATHS[path](config, name, wrong)
    tb = info.value.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    return info.value.with_traceback(tb)


@pytest.mark.parametrize(
    ("path", "name", "base", "wrong"),
    [
        (path, name, base, wrong)
        for path in PATHS
        for name, base, wrong, misplaced in CASES
        # with_options() keeps the options it is given as they are but the secret ones (the
        # configuration seals them all): a secret misplaced there is the caller's text
        if not (misplaced and path == "with_options")
    ],
)
def test_no_frame_of_the_error_or_its_chain_holds_a_secret(
    path: str, name: str, base: Mapping[str, Any], wrong: Mapping[str, Any]
) -> None:
    error = raised(path, name, base, wrong)
    assert {p.driver for p in error.problems} == {name}
    held = held_in_frames(error, SECRETS)
    assert not held, held
    shown = [text for text in error_texts(error) for s in SECRETS if s in text]
    assert not shown, shown
    # the chain as walked: the error, its problems, and what each was raised from or during
    assert error in chain(error) and all(p in chain(error) for p in error.problems)


def test_with_options_holds_the_secret_it_was_given_wrapped() -> None:
    """Its frame is in the traceback of any error the variant raises: the options given
    were there as text, a mistyped secret among them."""
    error = raised("with_options", "pusher", PUSHER, {"secret": " " + SECRET})
    frames = []
    tb = error.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame.f_code.co_name)
        tb = tb.tb_next
    assert frames[0] == "with_options"  # kept: the traceback still points at the call
    assert not held_in_frames(error, [SECRET])


def test_an_exception_the_caller_was_handling_keeps_its_traceback() -> None:
    """Not thrown away: it is the caller's, holds no secret of the library's, and points at
    the caller's line."""
    config = {"DRIVER": "pusher", "DRIVERS": {"pusher": {**PUSHER, "port": "port-text"}}}
    with Broadcast(config) as broadcast:
        try:
            try:
                int("not a number")  # the caller's own failure
            except ValueError:
                broadcast.driver()
        except ConfigurationError as exc:
            error = exc
    context = error.__context__
    assert isinstance(context, ValueError) and context.__traceback__ is not None
    assert context.__traceback__.tb_frame.f_code.co_name == (
        "test_an_exception_the_caller_was_handling_keeps_its_traceback"
    )
    assert error.key == "port"
