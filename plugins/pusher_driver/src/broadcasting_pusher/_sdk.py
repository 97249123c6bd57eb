"""The SDK's client with its app secret in a :class:`~broadcasting.Secret`, not plain text.

The SDK reads the secret only through its ``secret`` property, to sign a request; that is
where it is revealed (``tests/pusher/test_sdk_internals.py`` fails if the SDK changes).
"""

from __future__ import annotations

from typing import Any

from pusher.pusher_client import PusherClient

from broadcasting.plugin import Secret


class GuardedPusherClient(PusherClient):  # type: ignore[misc]
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # the SDK checks the secret first
        self._secret: Any = Secret(self._secret)

    @property
    def secret(self) -> str:
        return str(self._secret.reveal())
