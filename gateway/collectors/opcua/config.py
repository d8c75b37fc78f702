"""Configuration schema of OPC UA devices (``devices.opcua``)."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import Field, SecretStr, model_validator

from gateway.core.configbase import Backoff, StrictModel


class OpcUaNode(StrictModel):
    """One node: by NodeId string (``i=``, ``s=``, ``g=``, ``b=`` part) or by browse path, with
    the namespace given by URI, never by index."""

    channel: str
    namespace_uri: str
    node_id: str | None = None
    browse_path: list[str] | None = None
    kind: Literal["reading", "waveform"] = "reading"
    mode: Literal["subscription", "polling"] | None = None

    @model_validator(mode="after")
    def _check(self) -> Self:
        if (self.node_id is None) == (self.browse_path is None):
            raise ValueError("give exactly one of 'node_id' and 'browse_path'")
        return self


class OpcUaDevice(StrictModel):
    """One OPC UA server endpoint."""

    endpoint: str = Field(pattern=r"^opc\.tcp://")
    security_mode: Literal["None", "Sign", "SignAndEncrypt"] = "None"
    security_policy: Literal[
        "None", "Basic256Sha256", "Aes128_Sha256_RsaOaep", "Aes256_Sha256_RsaPss"
    ] = "None"
    username: str | None = None
    password: SecretStr | None = None
    trust_on_first_use: bool = False
    mode: Literal["subscription", "polling"] = "subscription"
    publishing_interval_ms: int = Field(250, ge=10, le=60_000)
    poll_period_s: float = Field(1.0, gt=0)
    reconnect: Backoff = Backoff()
    nodes: list[OpcUaNode] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> Self:
        if (self.security_mode == "None") != (self.security_policy == "None"):
            raise ValueError("security_mode and security_policy must both be 'None' or neither")
        if (self.username is None) != (self.password is None):
            raise ValueError("give both 'username' and 'password' or neither")
        return self

    def channels(self) -> list[tuple[str, str]]:
        return [(f"nodes.{i}.channel", n.channel) for i, n in enumerate(self.nodes)]
