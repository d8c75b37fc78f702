"""The manifest beside each ``.tflite``: what the model consumes, how to read its score.

A model directory holds ``manifest.json`` and the ``.tflite`` it names. The manifest states the
feature schema version and the ordered feature names the model consumes, how raw feature values
are normalised before the model sees them, what the score means, the alarm threshold and how it
was calibrated, the sha256 of the ``.tflite`` and a ``signature`` over the manifest (``null``
when unsigned; verified by the model registry).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from gateway.core.errors import ConfigError

MANIFEST_NAME = "manifest.json"
FORMAT: Literal["pdm-model/1"] = "pdm-model/1"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Normalisation(_Strict):
    """``z = (t(x) - mean) / std`` per feature, ``t`` = ``log10(max(x, eps))`` or identity, then
    ``z = soft_clip * tanh(z / soft_clip)`` when ``soft_clip`` is set."""

    transform: list[Literal["log10", "none"]]
    eps: float = Field(1e-12, gt=0)
    soft_clip: float | None = Field(None, gt=0)
    mean: list[float]
    std: list[float]


class ScoreDef(_Strict):
    """What the score means; ``saturates_at`` is the largest score the model can output (int8
    models: their output range, a multiple of the threshold), None when unbounded."""

    definition: str
    components: int = Field(ge=0)
    saturates_at: float | None = None


class Calibration(_Strict):
    """How the threshold was set (holdout of whole contiguous segments of healthy data)."""

    method: str
    target_false_alarm_rate: float
    estimated_false_alarm_rate: float
    margin: float
    holdout_segments: int
    windows: int
    sample_rate_hz: list[float] = Field(default_factory=list)


class DspRequirements(_Strict):
    """The DSP settings the features were computed with: bands in Hz, the window as a duration
    (so the frequency resolution is the same at any sample rate), and the highest frequency the
    features use (the input's Nyquist frequency must be above it)."""

    bands_hz: list[tuple[float, float]] = Field(default_factory=list)
    velocity_band_hz: tuple[float, float] = (10.0, 1000.0)
    envelope_band_hz: tuple[float, float] | None = None
    window_s: float = Field(0.16, gt=0)
    hop_fraction: float = Field(0.5, gt=0, le=1)
    max_frequency_hz: float = 0.0


class Manifest(_Strict):
    format: Literal["pdm-model/1"] = FORMAT
    model_id: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")
    version: str = Field(min_length=1)
    description: str = ""
    channel_kind: Literal["vibration", "acoustic"] = "vibration"
    schema_version: str
    features: list[str] = Field(min_length=1)
    normalisation: Normalisation
    score: ScoreDef
    threshold: float = Field(gt=0)
    calibration: Calibration
    dsp: DspRequirements = DspRequirements()
    file: str = "model.tflite"
    quantization: Literal["float32", "int8"] = "float32"
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    signature: str | None = None

    @model_validator(mode="after")
    def _check(self) -> Self:
        n = len(self.features)
        norm = self.normalisation
        if not len(norm.transform) == len(norm.mean) == len(norm.std) == n:
            raise ValueError(f"normalisation needs {n} entries per list (one per feature)")
        if any(s <= 0 for s in norm.std):
            raise ValueError("normalisation.std entries must be positive")
        if len(set(self.features)) != n:
            raise ValueError("features must be unique")
        return self

    def dump(self) -> str:
        return json.dumps(self.model_dump(mode="json"), indent=2) + "\n"


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_manifest(model_dir: Path) -> Manifest:
    """Parse ``model_dir/manifest.json``; ``ConfigError`` naming the file and field if bad."""
    path = model_dir / MANIFEST_NAME
    try:
        return Manifest.model_validate_json(path.read_bytes())
    except OSError as exc:
        raise ConfigError([("", f"{path}: cannot read: {exc.strerror or exc}")]) from None
    except ValidationError as exc:
        raise ConfigError(
            [(f"{path}:{'.'.join(str(p) for p in e['loc'])}", e["msg"]) for e in exc.errors()]
        ) from None


def read_model(model_dir: Path) -> tuple[Manifest, bytes]:
    """The manifest and the verified ``.tflite`` bytes (sha256 checked against the manifest)."""
    manifest = read_manifest(model_dir)
    path = model_dir / manifest.file
    try:
        content = path.read_bytes()
    except OSError as exc:
        raise ConfigError([("", f"{path}: cannot read: {exc.strerror or exc}")]) from None
    digest = sha256_of(content)
    if digest != manifest.sha256:
        raise ConfigError(
            [("", f"{path}: sha256 {digest} does not match the manifest's {manifest.sha256}")]
        )
    return manifest, content


def write_model(model_dir: Path, manifest: Manifest, content: bytes) -> None:
    """Write the ``.tflite`` then its manifest (the manifest's sha256 must match)."""
    if sha256_of(content) != manifest.sha256:
        raise ValueError("manifest sha256 does not match the model content")
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / manifest.file).write_bytes(content)
    tmp = model_dir / (MANIFEST_NAME + ".tmp")
    tmp.write_text(manifest.dump())
    tmp.replace(model_dir / MANIFEST_NAME)


def feature_mismatch(
    manifest: Manifest, schema_version: str, produced: tuple[str, ...]
) -> str | None:
    """Why features ``produced`` under ``schema_version`` cannot feed the model, or None."""
    if manifest.schema_version != schema_version:
        return (
            f"model {manifest.model_id} {manifest.version} needs feature schema "
            f"{manifest.schema_version!r}, the DSP produces {schema_version!r}"
        )
    missing = [f for f in manifest.features if f not in produced]
    if missing:
        return (
            f"model {manifest.model_id} {manifest.version} needs feature(s) "
            f"{', '.join(missing)} that the configured DSP does not produce"
        )
    return None
