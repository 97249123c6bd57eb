"""Push events to browsers through Pusher, Ably and other realtime services.

>>> from broadcasting import Broadcast
>>> Broadcast({"DRIVER": "null"}).channel("orders", {"id": 42}, "shipped").channels
('orders',)
"""

from __future__ import annotations

from broadcasting._auth import AuthKind, AuthRequest, ChannelRules
from broadcasting._broadcast import Broadcast
from broadcasting._channels import (
    Channel,
    ChannelKind,
    EncryptedPrivateChannel,
    PresenceChannel,
    PrivateChannel,
)
from broadcasting._config import Config, load_config
from broadcasting._delivery import (
    DELIVERY_OPTIONS,
    Answer,
    Batch,
    Capabilities,
    DeliveryOptions,
    Part,
    SendResult,
)
from broadcasting._driver import Driver
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
    PayloadTooLargeError,
    PluginLoadError,
    PublishError,
    RuleError,
    UnauthorizedError,
)
from broadcasting._events import (
    LARAVEL_NAMESPACE,
    Broadcastable,
    BroadcastEvent,
    LaravelEvent,
    echo_event_name,
)
from broadcasting._health import HEALTH_STATUSES, Health, HealthStatus
from broadcasting._loop import run_sync
from broadcasting._markers import hookimpl, hookspec
from broadcasting._perloop import PerLoop
from broadcasting._plugins import (
    DriverInfo,
    installed_drivers,
    register_driver,
    unregister_driver,
)
from broadcasting._retry import Retry
from broadcasting._state import SUBSCRIBED, ChannelInfo, Heard, Member
from broadcasting._types import Limits, Message, Payload, Receipt, Secret, encode_payload
from broadcasting._webhooks import WebhookEvent

__version__ = "0.2.0"

__all__ = [
    "Answer",
    "AuthKind",
    "AuthRequest",
    "Batch",
    "Broadcast",
    "BroadcastError",
    "BroadcastEvent",
    "Broadcastable",
    "Capabilities",
    "Channel",
    "ChannelInfo",
    "ChannelKind",
    "ChannelRules",
    "CloseError",
    "Config",
    "ConfigurationError",
    "DELIVERY_OPTIONS",
    "DeliveryOptions",
    "Driver",
    "DriverInfo",
    "DriverNotFoundError",
    "EncryptedPrivateChannel",
    "ForbiddenError",
    "HEALTH_STATUSES",
    "Health",
    "HealthStatus",
    "Heard",
    "BadRequestError",
    "InvalidChannelError",
    "InvalidEventError",
    "InvalidPayloadError",
    "LARAVEL_NAMESPACE",
    "LaravelEvent",
    "Limits",
    "Member",
    "Message",
    "NotSupportedError",
    "Part",
    "Payload",
    "PayloadTooLargeError",
    "PerLoop",
    "PluginLoadError",
    "PresenceChannel",
    "PrivateChannel",
    "PublishError",
    "Receipt",
    "Retry",
    "RuleError",
    "SUBSCRIBED",
    "Secret",
    "SendResult",
    "UnauthorizedError",
    "InputError",
    "WebhookEvent",
    "__version__",
    "echo_event_name",
    "encode_payload",
    "hookimpl",
    "hookspec",
    "installed_drivers",
    "load_config",
    "register_driver",
    "run_sync",
    "unregister_driver",
]
