"""Push events to browsers through Pusher, Ably and other realtime services.

>>> from broadcasting import Broadcast
>>> Broadcast({"DRIVER": "null"}).channel("orders", {"id": 42}, "shipped").channels
('orders',)
"""

from __future__ import annotations

from broadcasting._broadcast import Broadcast
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
    BroadcastError,
    CloseError,
    ConfigurationError,
    DriverNotFound,
    InvalidChannel,
    InvalidChannelType,
    InvalidEvent,
    InvalidPayload,
    PayloadTooLarge,
    PluginLoadError,
    PublishError,
    ValidationError,
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
from broadcasting._types import Limits, Message, Payload, Receipt, Secret, encode_payload

__version__ = "0.2.0"

__all__ = [
    "DELIVERY_OPTIONS",
    "Answer",
    "Batch",
    "Broadcast",
    "BroadcastError",
    "Capabilities",
    "CloseError",
    "Config",
    "ConfigurationError",
    "DeliveryOptions",
    "Driver",
    "DriverInfo",
    "DriverNotFound",
    "HEALTH_STATUSES",
    "Health",
    "HealthStatus",
    "InvalidChannel",
    "InvalidChannelType",
    "InvalidEvent",
    "InvalidPayload",
    "Limits",
    "Message",
    "Part",
    "Payload",
    "PayloadTooLarge",
    "PerLoop",
    "PluginLoadError",
    "PublishError",
    "Receipt",
    "Retry",
    "Secret",
    "SendResult",
    "ValidationError",
    "__version__",
    "encode_payload",
    "hookimpl",
    "hookspec",
    "installed_drivers",
    "load_config",
    "register_driver",
    "run_sync",
    "unregister_driver",
]
