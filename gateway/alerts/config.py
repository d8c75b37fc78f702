"""Configuration schema of alert rules (``[alerts.rules.<name>]``)."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import Field, model_validator

from gateway.core.configbase import StrictModel


class AlertRule(StrictModel):
    """Raise when the watched value reaches ``raise_level`` in ``on_n`` of the last ``on_m``
    windows; clear when it is below ``clear_level`` in ``off_n`` of the last ``off_m``."""

    asset: str
    source: Literal["score", "feature"] = "score"
    channel: str | None = None
    feature: str | None = None
    raise_level: float
    clear_level: float
    severity: Literal["advisory", "warning", "alarm", "critical"] = "warning"
    on_n: int = Field(3, ge=1)
    on_m: int = Field(5, ge=1)
    off_n: int = Field(5, ge=1)
    off_m: int = Field(5, ge=1)

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.clear_level >= self.raise_level:
            raise ValueError("clear_level must be below raise_level (hysteresis)")
        if self.on_n > self.on_m or self.off_n > self.off_m:
            raise ValueError("on_n/off_n must not exceed on_m/off_m")
        if self.source == "feature" and not (self.feature and self.channel):
            raise ValueError("a feature rule needs 'channel' and 'feature'")
        return self


class AlertsConfig(StrictModel):
    rules: dict[str, AlertRule] = Field(default_factory=dict)
