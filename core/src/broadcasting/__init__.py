"""Push events to browsers through Pusher, Ably and other realtime services (README.md).

What an application uses; driver and plugin authors use :mod:`broadcasting.plugin`.
"""

from __future__ import annotations

from broadcasting._broadcast import Broadcast
from broadcasting._broadcaster import Broadcaster
from broadcasting._channels import Channel, EncryptedPrivateChannel, PresenceChannel, PrivateChannel
from broadcasting._errors import (
    BadRequestError,
    BroadcastError,
    CloseError,
    ConfigurationError,
    DriverNotFoundError,
    ForbiddenError,
    InputError,
    InvalidChannelError,
    InvalidEventError,
    InvalidPayloadError,
    NotSupportedError,
    OutboxError,
    PayloadTooLargeError,
    PluginLoadError,
    PublishError,
    QueryError,
    RuleError,
    ServiceError,
    UnauthorizedError,
)
from broadcasting._events import Broadcastable, BroadcastEvent, LaravelEvent, echo_event_name
from broadcasting._health import Health
from broadcasting._state import ChannelInfo, Member
from broadcasting._types import Receipt
from broadcasting._webhooks import WebhookEvent

__version__ = "0.4.0.dev0"

__all__ = [
    "BadRequestError",
    "Broadcast",
    "BroadcastError",
    "BroadcastEvent",
    "Broadcastable",
    "Broadcaster",
    "Channel",
    "ChannelInfo",
    "CloseError",
    "ConfigurationError",
    "DriverNotFoundError",
    "EncryptedPrivateChannel",
    "ForbiddenError",
    "Health",
    "InputError",
    "InvalidChannelError",
    "InvalidEventError",
    "InvalidPayloadError",
    "LaravelEvent",
    "Member",
    "NotSupportedError",
    "OutboxError",
    "PayloadTooLargeError",
    "PluginLoadError",
    "PresenceChannel",
    "PrivateChannel",
    "PublishError",
    "QueryError",
    "Receipt",
    "RuleError",
    "ServiceError",
    "UnauthorizedError",
    "WebhookEvent",
    "__version__",
    "echo_event_name",
]
