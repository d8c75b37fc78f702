"""Core types shared by every stage: records, stage protocols, errors, clocks."""

from gateway.core.clock import Clock, FakeClock, SystemClock
from gateway.core.errors import (
    ConfigError,
    GatewayError,
    PermanentError,
    ResourceUnavailableError,
    TransientError,
)
from gateway.core.records import (
    AlertEvent,
    AlertState,
    FeatureFrame,
    Quality,
    Reading,
    SampleBlock,
    Score,
    Severity,
)
from gateway.core.stages import HasStatus, Stage

__all__ = [
    "AlertEvent",
    "AlertState",
    "Clock",
    "ConfigError",
    "FakeClock",
    "FeatureFrame",
    "GatewayError",
    "HasStatus",
    "PermanentError",
    "Quality",
    "Reading",
    "ResourceUnavailableError",
    "SampleBlock",
    "Score",
    "Severity",
    "Stage",
    "SystemClock",
    "TransientError",
]
