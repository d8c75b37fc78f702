"""Configuration schema of the uplinks (``[uplink]``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import AnyHttpUrl, Field, SecretStr

from gateway.core.configbase import Backoff, StrictModel


class InfluxUplinkConfig(StrictModel):
    """InfluxDB v2 write API. ``token`` is a secret: use ``${ENV_VAR}`` interpolation.

    ``name`` keys this sink's cursor in the journal: keep it when changing the other settings and
    the backlog is kept. Bulk records go in batches of ``batch_size`` points or every
    ``flush_interval_s``, alerts at once. ``max_points_per_s`` caps the catch-up rate after an
    outage. TLS: an ``https`` url, verified against ``ca_file`` (else the system store) unless
    ``verify_tls`` is false.
    """

    name: str = Field("influxdb", pattern=r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
    url: AnyHttpUrl
    org: str = Field(min_length=1)
    bucket: str = Field(min_length=1)
    token: SecretStr
    batch_size: int = Field(5000, ge=1, le=100_000)
    flush_interval_s: float = Field(1.0, gt=0, le=600)
    timeout_s: float = Field(10.0, gt=0)
    gzip: bool = True
    verify_tls: bool = True
    ca_file: Path | None = None
    max_points_per_s: float = Field(50_000.0, gt=0)
    backoff: Backoff = Backoff(initial_s=1.0, max_s=60.0)
    #: longest Retry-After honoured (a larger one is capped to this)
    max_retry_after_s: float = Field(300.0, gt=0)
    #: the uplink is "degraded" while its oldest unsent record is older than this
    degraded_after_s: float = Field(60.0, gt=0)


class UplinkConfig(StrictModel):
    influxdb: InfluxUplinkConfig | None = None
