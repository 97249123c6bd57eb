"""The SDK's client, holding its secret as a :class:`~broadcasting.Secret` instead of text.

``pusher.pusher_client.PusherClient`` keeps the app secret as plain text in
``_secret`` and reads it back only through its ``secret`` property (to sign
requests). This subclass swaps the text for a ``Secret`` once the SDK has
checked it, and reveals it in that property alone, at the moment of signing:
so no attribute of the driver's object graph (what a debugger, ``vars()`` or
an error tracker's frame locals show) holds the secret.
``tests/pusher/test_sdk_internals.py`` fails loudly if the SDK stops reading
the secret through that property.
"""

from __future__ import annotations

from typing import Any

from pusher.pusher_client import PusherClient

from broadcasting.plugin import Secret


class GuardedPusherClient(PusherClient):  # type: ignore[misc]
    """``PusherClient`` whose secret stays wrapped until a request is signed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._secret: Any = Secret(self._secret)

    @property
    def secret(self) -> str:
        """The app secret, revealed for the SDK's signing code only."""
        value: str = self._secret.reveal()
        return value
