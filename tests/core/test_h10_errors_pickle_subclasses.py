"""Review h10 of aec3900 (``BroadcastError.__reduce__``): the errors third parties derive from
the library's pickle as they are too, and pickling an error never writes out a Secret.

* a subclass with an ``__init__`` of its own (other arguments than the message) and
  attributes comes back with them, its ``__init__`` not run again;
* a subclass with ``__slots__`` comes back with its slots' values (``__dict__`` alone left
  them out: the attribute was missing after unpickling);
* an error whose ``args`` or attributes hold a :class:`~broadcasting.Secret` does not pickle
  (the Secret refuses), so the value is in no pickle.
"""

from __future__ import annotations

import copy
import pickle

import pytest

from broadcasting import BroadcastError, ConfigurationError, PublishError
from broadcasting._types import Secret


class DeliveryRefused(PublishError):
    """A third party's: an ``__init__`` of its own, attributes it sets."""

    def __init__(self, code: int, *, tenant: str) -> None:
        self.refusal = code
        self.tenant = tenant
        super().__init__(f"refused with {code}", driver="acme")


class Slotted(BroadcastError):
    __slots__ = ("__private", "attempt")

    def __init__(self, attempt: int) -> None:
        self.attempt = attempt
        self.__private = attempt * 2
        super().__init__(f"attempt {attempt}")

    @property
    def private(self) -> int:
        return self.__private


class SlottedChild(Slotted):
    __slots__ = "extra"  # a single name, as a str

    def __init__(self, attempt: int) -> None:
        super().__init__(attempt)
        self.extra = "e"


class Unset(BroadcastError):
    __slots__ = ("maybe",)  # never set: stays unset


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_a_subclass_with_its_own_init_comes_back_as_it_is(protocol: int) -> None:
    error = DeliveryRefused(429, tenant="t1")
    back = pickle.loads(pickle.dumps(error, protocol))
    assert type(back) is DeliveryRefused
    assert (back.args, back.refusal, back.tenant, back.driver) == (error.args, 429, "t1", "acme")
    assert str(back) == str(error)


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_a_subclass_with_slots_comes_back_with_their_values(protocol: int) -> None:
    back = pickle.loads(pickle.dumps(SlottedChild(3), protocol))
    assert type(back) is SlottedChild and back.args == ("attempt 3",)
    assert (back.attempt, back.private, back.extra) == (3, 6, "e")
    unset = pickle.loads(pickle.dumps(Unset("m"), protocol))
    assert unset.args == ("m",) and not hasattr(unset, "maybe")


def test_copy_keeps_the_slots_too() -> None:
    assert copy.copy(Slotted(2)).attempt == 2
    assert copy.deepcopy(SlottedChild(2)).extra == "e"


@pytest.mark.parametrize(
    "make",
    [
        lambda s: BroadcastError("refused", s),
        lambda s: DeliveryRefused(1, tenant=s),
        lambda s: ConfigurationError.combine([ConfigurationError("acme", "a", "bad"), _holding(s)]),
    ],
    ids=["in args", "an attribute", "a combined error's problem"],
)
def test_an_error_holding_a_secret_is_not_pickled(make: object) -> None:
    secret = Secret("hunter2-value")
    error = make(secret)  # type: ignore[operator]
    with pytest.raises(TypeError, match="a Secret cannot be pickled"):
        pickle.dumps(error)


def _holding(secret: Secret) -> ConfigurationError:
    error = ConfigurationError("acme", "b", "bad")
    error.value = secret  # type: ignore[attr-defined]
    return error
