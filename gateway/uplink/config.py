"""Configuration schema of the uplinks (``[uplink]``)."""

from __future__ import annotations

from pydantic import AnyHttpUrl, Field, SecretStr

from gateway.core.configbase import StrictModel


class InfluxUplinkConfig(StrictModel):
    """InfluxDB v2 write API. ``token`` is a secret: use ``${ENV_VAR}`` interpolation."""

    url: AnyHttpUrl
    org: str = Field(min_length=1)
    bucket: str = Field(min_length=1)
    token: SecretStr
    batch_size: int = Field(5000, ge=1, le=100_000)
    timeout_s: float = Field(10.0, gt=0)


class UplinkConfig(StrictModel):
    influxdb: InfluxUplinkConfig | None = None
