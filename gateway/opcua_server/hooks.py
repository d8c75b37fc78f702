"""What the OPC UA server's methods call into, as small protocols bound at start-up."""

from __future__ import annotations

from typing import Protocol

from gateway.core.records import AlertEvent


class Acknowledger(Protocol):
    """Acknowledges alerts (the alert stage). Raises ``KeyError`` for an unknown alert id."""

    async def acknowledge(self, alert_id: str, by: str = "") -> AlertEvent: ...


class ModelRegistryHook(Protocol):
    """Promotes or rolls back the model of an asset; returns the version now active.
    Raises ``KeyError`` for an unknown asset or version, ``ValueError`` when refused."""

    async def promote(self, asset: str, version: str) -> str: ...

    async def rollback(self, asset: str) -> str: ...
