"""Configuration schema of alert rules (``[alerts.rules.<name>]``) and alert actions.

A rule watches one value of one asset and raises an alert when the value reaches ``raise_level``
in ``on_n`` of the last ``on_m`` windows; the alert clears when the value is below
``clear_level`` in ``off_n`` of the last ``off_m`` windows (hysteresis: ``clear_level`` <
``raise_level``). Sources:

- ``score``: the anomaly score of the asset's model (shadow scores are never alerted on);
  ``channel`` restricts it to the scores of one channel.
- ``feature``: one feature of one channel, e.g. ``value`` or ``rate_per_min`` of a temperature
  channel (absolute limit and rate of rise).
- ``iso20816``: velocity RMS (mm/s) of a vibration channel against the ISO 20816-3 zone boundary
  (``zone`` C or D) of the asset's ``machine_class``; clears below ``(1 - hysteresis)`` of it.
- ``sensor``: a sensor-health condition of one channel (``stale``, ``stuck``, ``saturated``,
  ``disconnected``); category "sensor", kept apart from machine anomalies.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Literal, Self

from pydantic import Field, model_validator

from gateway.core.configbase import StrictModel

if TYPE_CHECKING:  # annotations only: gateway.config imports this module
    from gateway.config.plant import Asset, Channel

SeverityName = Literal["advisory", "warning", "alarm", "critical"]
SensorCondition = Literal["stale", "stuck", "saturated", "disconnected"]


class ModbusAction(StrictModel):
    """Write a coil or a holding register of a Modbus TCP device."""

    kind: Literal["modbus"] = "modbus"
    host: str
    port: int = Field(502, ge=1, le=65535)
    device_id: int = Field(1, ge=0, le=247)
    table: Literal["coil", "holding"] = "coil"
    address: int = Field(ge=0, le=65535)
    on_raise: int = Field(1, ge=0, le=65535)
    on_clear: int = Field(0, ge=0, le=65535)
    timeout_s: float = Field(2.0, gt=0, le=60)


class OpcUaAction(StrictModel):
    """Write a variable of an OPC UA server (security None; user and password optional, e.g.
    ``password = "${BEACON_PASSWORD}"``)."""

    kind: Literal["opcua"] = "opcua"
    endpoint: str = Field(pattern=r"^opc\.tcp://")
    node_id: str = Field(min_length=1, examples=["ns=2;s=Line1.Beacon"])
    data_type: Literal["Boolean", "Int16", "UInt16", "Int32", "UInt32", "Float", "Double"] = (
        "Boolean"
    )
    on_raise: float = 1
    on_clear: float = 0
    username: str | None = None
    password: str | None = None
    timeout_s: float = Field(5.0, gt=0, le=60)


class AlertAction(StrictModel):
    """An output written when the rule's alert is raised and when it clears (off unless set).

    ``min_interval_s`` rate-limits writes per rule: a transition that comes sooner waits for
    its turn (it is not dropped)."""

    target: ModbusAction | OpcUaAction
    min_interval_s: float = Field(1.0, ge=0)


class AlertRule(StrictModel):
    asset: str
    source: Literal["score", "feature", "iso20816", "sensor"] = "score"
    channel: str | None = None
    feature: str | None = None
    raise_level: float | None = None
    clear_level: float | None = None
    #: default: warning (zone C: warning, zone D: alarm)
    severity: SeverityName | None = None
    on_n: int = Field(3, ge=1)
    on_m: int = Field(5, ge=1)
    off_n: int = Field(5, ge=1)
    off_m: int = Field(5, ge=1)
    zone: Literal["C", "D"] = "C"
    hysteresis: float = Field(0.1, ge=0, lt=1)
    condition: SensorCondition | None = None
    #: stale: raised when no window of the channel arrived for this long (or it is Uncertain)
    stale_after_s: float = Field(10.0, gt=0)
    #: stuck: a window whose peak-to-peak (waveform) or change (scalar) is at most this
    stuck_tolerance: float = Field(0.0, ge=0)
    #: saturated: a window whose peak (waveform) or |value| (scalar) reaches this
    saturation_level: float | None = Field(None, gt=0)
    action: AlertAction | None = None

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.source in ("score", "feature"):
            if self.raise_level is None or self.clear_level is None:
                raise ValueError(f"a {self.source} rule needs 'raise_level' and 'clear_level'")
            if self.clear_level >= self.raise_level:
                raise ValueError("clear_level must be below raise_level (hysteresis)")
        elif self.raise_level is not None or self.clear_level is not None:
            raise ValueError(f"a {self.source} rule takes no 'raise_level'/'clear_level'")
        if self.on_n > self.on_m or self.off_n > self.off_m:
            raise ValueError("on_n/off_n must not exceed on_m/off_m")
        if self.source == "feature" and not (self.feature and self.channel):
            raise ValueError("a feature rule needs 'channel' and 'feature'")
        if self.source == "iso20816" and not self.channel:
            raise ValueError("an iso20816 rule needs the vibration 'channel'")
        if self.source == "sensor":
            if not (self.channel and self.condition):
                raise ValueError("a sensor rule needs 'channel' and 'condition'")
            if self.condition == "saturated" and self.saturation_level is None:
                raise ValueError("a saturated rule needs 'saturation_level'")
        elif self.condition is not None:
            raise ValueError("'condition' is for sensor rules")
        return self

    @property
    def levels(self) -> tuple[float, float]:
        """``(raise_level, clear_level)`` of a score or feature rule."""
        if self.raise_level is None or self.clear_level is None:
            raise ValueError(f"a {self.source} rule has no levels")
        return self.raise_level, self.clear_level

    @property
    def category(self) -> str:
        return "sensor" if self.source == "sensor" else "machine"

    @property
    def severity_name(self) -> SeverityName:
        if self.severity is not None:
            return self.severity
        return "alarm" if (self.source == "iso20816" and self.zone == "D") else "warning"


class AlertsConfig(StrictModel):
    rules: dict[str, AlertRule] = Field(default_factory=dict)
    #: how many most-deviating features a raised machine alert names
    top_features: int = Field(3, ge=0, le=20)
    #: weight of a new window in the running baseline of each feature (EWMA)
    baseline_alpha: float = Field(0.05, gt=0, le=1)
    #: windows a baseline needs before it names deviating features
    baseline_min_windows: int = Field(10, ge=1)
    #: how often stale channels and source states are checked, seconds
    tick_s: float = Field(1.0, gt=0, le=60)


def rule_channel_errors(
    name: str, rule: AlertRule, assets: Mapping[str, Asset], channels: Mapping[str, Channel]
) -> list[tuple[str, str]]:
    """References of a rule that other sections must satisfy, as ``(key path, reason)``."""
    path = f"alerts.rules.{name}"
    asset = assets.get(rule.asset)
    ch = channels.get(rule.channel) if rule.channel else None
    if asset is None or ch is None:
        return []
    errors = []
    if rule.channel not in asset.channels:
        errors.append((f"{path}.channel", f"{rule.channel!r} is not a channel of {rule.asset!r}"))
    if rule.source == "iso20816" and ch.kind != "vibration":
        errors.append((f"{path}.channel", f"{rule.channel!r} is not a vibration channel"))
    if (
        rule.source == "feature"
        and not ch.is_waveform
        and rule.feature not in ("value", "rate_per_min")
    ):
        errors.append((f"{path}.feature", "a scalar channel has 'value' and 'rate_per_min'"))
    return errors
