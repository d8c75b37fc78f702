"""Configuration schema of the gateway's OPC UA server (``[opcua_server]``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from gateway.core.configbase import StrictModel

SecurityMode = Literal["None", "Sign", "SignAndEncrypt"]
_DEFAULT_MODE: SecurityMode = "SignAndEncrypt"


class OpcUaServerConfig(StrictModel):
    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(4840, ge=1, le=65535)
    namespace_uri: str = "urn:pdm-gateway:assets"
    security_modes: list[SecurityMode] = Field(default_factory=lambda: [_DEFAULT_MODE])
