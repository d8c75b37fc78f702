"""Schema of what the plant looks like: channels (what is measured) and assets (machines)."""

from __future__ import annotations

from typing import Any, Literal, Self

from pydantic import Field, model_validator

from gateway.core.configbase import StrictModel

ChannelKind = Literal["vibration", "acoustic", "temperature", "speed"]

DEFAULT_UNITS: dict[str, str] = {
    "vibration": "g",
    "acoustic": "Pa",
    "temperature": "degC",
    "speed": "Hz",
}
WAVEFORM_KINDS = frozenset({"vibration", "acoustic"})


class Channel(StrictModel):
    """One measured quantity. Waveform kinds (vibration, acoustic) need ``sample_rate_hz``."""

    kind: ChannelKind
    unit: str = ""
    sample_rate_hz: float | None = Field(None, gt=0, le=1_000_000)

    @model_validator(mode="before")
    @classmethod
    def _default_unit(cls, data: Any) -> Any:
        kind = data.get("kind") if isinstance(data, dict) else None
        if isinstance(kind, str) and kind in DEFAULT_UNITS and not data.get("unit"):
            return {**data, "unit": DEFAULT_UNITS[kind]}
        return data

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.kind in WAVEFORM_KINDS and self.sample_rate_hz is None:
            raise ValueError(f"a {self.kind} channel needs 'sample_rate_hz'")
        return self

    @property
    def is_waveform(self) -> bool:
        return self.kind in WAVEFORM_KINDS


class Bearing(StrictModel):
    """Rolling-element bearing geometry (gives BPFO, BPFI, BSF, FTF)."""

    balls: int = Field(ge=3, le=100)
    ball_diameter_mm: float = Field(gt=0)
    pitch_diameter_mm: float = Field(gt=0)
    contact_angle_deg: float = Field(0.0, ge=0, lt=90)

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.ball_diameter_mm >= self.pitch_diameter_mm:
            raise ValueError("ball_diameter_mm must be smaller than pitch_diameter_mm")
        return self


class Asset(StrictModel):
    """A machine: the channels that measure it and what is known of its kinematics.

    ``machine_class`` is the ISO 20816-3 group: ``group1`` (large, > 300 kW) or ``group2``
    (medium, 15-300 kW), with ``rigid`` or ``flexible`` foundation.
    """

    description: str = ""
    channels: list[str] = Field(min_length=1)
    machine_class: Literal["group1_rigid", "group1_flexible", "group2_rigid", "group2_flexible"] = (
        "group2_rigid"
    )
    shaft_speed_hz: float | None = Field(None, gt=0, le=2000)
    speed_channel: str | None = None
    bearing: Bearing | None = None
