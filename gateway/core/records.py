"""Frozen record types passed between stages.

Bulk data travels as numpy arrays (never lists of floats). Arrays handed to a record are owned by
that record afterwards: producers must not mutate them, and ``__post_init__`` marks them read-only.
Timestamps are integer nanoseconds since the Unix epoch (UTC): ``source_ts_ns`` is the time the
device says the data was sampled (or the gateway's best estimate), ``gateway_ts_ns`` the time the
gateway received it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]
Float64Array = npt.NDArray[np.float64]


class Quality(enum.IntEnum):
    """Data quality, ordered from best to worst (OPC UA's Good/Uncertain/Bad)."""

    GOOD = 0
    UNCERTAIN = 1
    BAD = 2


class Severity(enum.IntEnum):
    """Alert severity, ordered."""

    ADVISORY = 1
    WARNING = 2
    ALARM = 3
    CRITICAL = 4


class AlertState(enum.Enum):
    """Lifecycle state of an alert."""

    RAISED = "raised"
    ACKNOWLEDGED = "acknowledged"
    CLEARED = "cleared"


def _readonly(a: npt.NDArray[np.generic]) -> None:
    a.flags.writeable = False


@dataclass(frozen=True, slots=True)
class SampleBlock:
    """A contiguous run of waveform samples from one channel.

    ``samples`` is 1-D float32 in the channel's physical unit (g, Pa, ...).
    ``sequence`` is the absolute index of the first sample in the device's sample stream, so a
    following block is contiguous exactly when its ``sequence`` equals
    ``self.sequence + len(self.samples)``; anything else is a gap.
    """

    channel: str
    source_ts_ns: int
    gateway_ts_ns: int
    sample_rate_hz: float
    samples: FloatArray
    sequence: int
    quality: Quality = Quality.GOOD

    def __post_init__(self) -> None:
        if self.samples.dtype != np.float32 or self.samples.ndim != 1:
            raise TypeError("SampleBlock.samples must be a 1-D float32 array")
        if not self.sample_rate_hz > 0:
            raise ValueError("SampleBlock.sample_rate_hz must be positive")
        _readonly(self.samples)

    @property
    def next_sequence(self) -> int:
        """Sequence number the next contiguous block starts at."""
        return self.sequence + int(self.samples.shape[0])

    @property
    def duration_s(self) -> float:
        return float(self.samples.shape[0]) / self.sample_rate_hz


@dataclass(frozen=True, slots=True)
class Reading:
    """One scalar value of one channel (temperature, speed, ...), in the channel's unit."""

    channel: str
    source_ts_ns: int
    gateway_ts_ns: int
    value: float
    quality: Quality = Quality.GOOD


@dataclass(frozen=True, slots=True)
class FeatureFrame:
    """Features of one window of one channel of one asset.

    ``names``, ``units`` and ``values`` are aligned; ``schema_version`` names the feature schema
    (the ordered names and their definitions) that model manifests refer to.
    ``start_ts_ns``/``end_ts_ns`` bound the window in source time.
    """

    asset: str
    channel: str
    start_ts_ns: int
    end_ts_ns: int
    gateway_ts_ns: int
    schema_version: str
    names: tuple[str, ...]
    units: tuple[str, ...]
    values: Float64Array
    quality: Quality = Quality.GOOD

    def __post_init__(self) -> None:
        if not (len(self.names) == len(self.units) == self.values.shape[0]):
            raise ValueError("FeatureFrame names, units and values must have the same length")
        _readonly(self.values)

    def as_dict(self) -> dict[str, float]:
        return {n: float(v) for n, v in zip(self.names, self.values, strict=True)}


@dataclass(frozen=True, slots=True)
class Score:
    """An anomaly score produced by a model for one asset at one time.

    ``channel`` is the channel whose features were scored, or ``""`` when the model scores the
    asset as a whole. ``shadow`` marks a candidate model's score (recorded, never alerted on).
    """

    asset: str
    ts_ns: int
    model_id: str
    model_version: str
    score: float
    threshold: float
    shadow: bool = False
    channel: str = ""


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """A change in the lifecycle of one alert (raised, acknowledged, cleared).

    ``category`` keeps machine anomalies (``"machine"``) apart from sensor-health alerts
    (``"sensor"``: stale, stuck, saturated, disconnected); ``channel`` is ``""`` for asset-wide
    alerts.
    """

    alert_id: str
    asset: str
    rule: str
    state: AlertState
    severity: Severity
    ts_ns: int
    message: str
    model_version: str = ""
    top_features: tuple[tuple[str, float], ...] = field(default_factory=tuple)
    category: str = "machine"
    channel: str = ""


@dataclass(frozen=True, slots=True)
class ActionRecord:
    """The audit of one alert action: an output written (or not) on an alert transition.

    ``outcome`` is ``"written"``, ``"skipped"`` (the output already holds ``value``, e.g. after a
    restart) or ``"failed"`` (``detail`` says why); ``target`` names the device and address.
    """

    alert_id: str
    asset: str
    rule: str
    transition: AlertState
    ts_ns: int
    target: str
    value: float
    outcome: str
    detail: str = ""
