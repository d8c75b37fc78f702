"""``pdm-gateway models calibrate``: commission a model on site from healthy recordings.

Each input is one healthy recording (a run of the machine); its columns are channels. Features
are computed by the live DSP with explicit bands in Hz below the input's Nyquist frequency
(see ``gateway.inference.features``), a baseline is fitted in numpy, written as a ``.tflite``
with its manifest, and the threshold is set on held-out contiguous segments
(``gateway.inference.baseline``). No TensorFlow is involved.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from gateway.dsp.config import DspConfig
from gateway.dsp.recordings import read_recording
from gateway.inference import baseline as B
from gateway.inference.features import calibration_dsp, model_features, requirements
from gateway.inference.flatbuffer import build_residual_model, quantize_int8
from gateway.inference.manifest import (
    Calibration,
    DspRequirements,
    Manifest,
    Normalisation,
    ScoreDef,
    sha256_of,
    write_model,
)
from gateway.replay import iter_frames, plan_replay

F64 = npt.NDArray[np.float64]
F32 = npt.NDArray[np.float32]
#: int8 models resolve scores up to this multiple of the threshold (and saturate above it)
INT8_RANGE = 16.0
SCORE_DEFINITION = (
    "mean of squares of the whitened principal scores (Hotelling T^2 part) and the "
    "per-feature whitened PCA residual (squared prediction error part) of the normalised "
    "features; about 1 on healthy data"
)


@dataclass
class CalibrationResult:
    manifest: Manifest
    windows: list[int]  # usable windows per input
    dropped: int  # windows with a non-finite model feature
    dsp: DspConfig
    baseline: B.Baseline
    features: list[F64]  # the model features of the usable windows of each input
    out_dir: Path


def recording_features(
    path: Path,
    sample_rate_hz: float,
    dsp: DspConfig,
    config: Path | None,
    kind: str,
    unit: str,
) -> tuple[tuple[str, ...], F64]:
    """All features of every window of every channel of one recording, in time order."""
    names, data = read_recording(path)
    plan = plan_replay(names, sample_rate_hz, config, kind, unit)
    plan.dsp = dsp
    rows: list[F64] = []
    feature_names: tuple[str, ...] = ()
    for frames in iter_frames(plan, [data[:, i] for i in range(data.shape[1])], sample_rate_hz):
        for f in frames:
            if not plan.channels[f.channel].is_waveform or plan.channels[f.channel].kind != kind:
                continue
            if feature_names and f.names != feature_names:
                raise ValueError(f"{path}: channels differ in their features; calibrate one kind")
            feature_names = f.names
            rows.append(np.asarray(f.values))
    if not rows:
        raise ValueError(f"{path}: too short for one {dsp.window}-sample window")
    return feature_names, np.stack(rows)


def representative(z: F32, weight: F32, top_score: float, batch: int = 64) -> Iterator[F32]:
    """Healthy rows ``z``, then each feature alone pushed out until the score reaches
    ``top_score`` (or the soft-clip bound), so the int8 ranges cover healthy scores and scores
    well above the threshold with the resolution the threshold needs."""
    for start in range(0, z.shape[0], batch):
        yield z[start : start + batch]
    f = z.shape[1]
    c = B.SOFT_CLIP
    unit = np.vstack((np.eye(f), -np.eye(f))) * c
    s = np.mean((unit @ weight.astype(np.float64).T) ** 2, axis=1)
    scale = np.minimum(1.0, np.sqrt(top_score / np.maximum(s, 1e-12)))
    yield (unit * scale[:, None]).astype(np.float32)


def calibrate(
    inputs: list[Path],
    sample_rate_hz: float,
    out_dir: Path,
    *,
    config: Path | None = None,
    base_dsp: DspConfig | None = None,
    kind: str = "vibration",
    unit: str = "g",
    model_id: str = "baseline",
    version: str | None = None,
    target: float = 0.01,
    margin: float = 1.5,
    max_frequency_hz: float | None = None,
    quantization: str = "float32",
) -> CalibrationResult:
    """Fit, calibrate and write ``out_dir/model.tflite`` and ``out_dir/manifest.json``."""
    if not 0 < target < 0.5:
        raise ValueError("the false-alarm target must be between 0 and 0.5")
    if margin < 1:
        raise ValueError("the safety margin must be at least 1")
    if base_dsp is None:
        base_dsp = DspConfig()
        if config is not None:
            from gateway.config.loader import load_config

            base_dsp = load_config(config).dsp
    dsp, top = calibration_dsp(base_dsp, sample_rate_hz, max_frequency_hz)
    parts: list[F64] = []
    names: tuple[str, ...] = ()
    for path in inputs:
        n, x = recording_features(path, sample_rate_hz, dsp, config, kind, unit)
        if names and n != names:
            raise ValueError(f"{path}: its features differ from {inputs[0]}'s")
        names = n
        parts.append(x)
    chosen = model_features(names, envelope_fixed=dsp.envelope_band_hz is not None)
    if not chosen:
        raise ValueError("no rate-independent feature to learn from")
    idx = [names.index(c) for c in chosen]
    kept, windows, dropped = [], [], 0
    for x in parts:
        sel = x[:, idx]
        ok = np.isfinite(sel).all(axis=1)
        dropped += int((~ok).sum())
        kept.append(sel[ok])
        windows.append(int(ok.sum()))
    exported = export_baseline(
        kept,
        chosen,
        out_dir,
        dsp=requirements(dsp, sample_rate_hz, top),
        kind=kind,
        model_id=model_id,
        version=version,
        description=f"healthy baseline commissioned from {len(inputs)} recording(s)",
        target=target,
        margin=margin,
        sample_rates=[sample_rate_hz],
        quantizations=(quantization,),
    )
    manifest = exported.manifests[quantization]
    return CalibrationResult(manifest, windows, dropped, dsp, exported.baseline, kept, out_dir)


@dataclass
class Exported:
    """The fitted baseline and the manifest written per quantisation."""

    baseline: B.Baseline
    manifests: dict[str, Manifest]


def export_baseline(
    parts: list[F64],
    features: list[str],
    out_dir: Path,
    *,
    dsp: DspRequirements,
    kind: str,
    model_id: str,
    version: str | None,
    description: str,
    target: float,
    margin: float,
    sample_rates: list[float],
    quantizations: tuple[str, ...] = ("float32",),
    min_segments: int = 5,
) -> Exported:
    """Fit on healthy ``parts`` (runs, in time order; rows of ``features``), set the threshold
    on held-out contiguous segments, and write one model directory per quantisation:
    ``out_dir`` for the first, ``out_dir-<quantisation>`` for the others."""
    log_mask = np.ones(len(features), dtype=bool)
    segments = B.split_segments([k for k in parts if k.shape[0] > 0], min_segments)
    thr = B.calibrate_threshold(segments, log_mask, target, margin)
    x = np.concatenate(parts)
    model = B.fit(x, log_mask)
    version = version or dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    out = Exported(model, {})
    for i, quantization in enumerate(quantizations):
        content = build_residual_model(model.weight, description=f"{model_id} baseline")
        saturates_at = None
        if quantization == "int8":
            content = quantize_int8(
                content, representative(model.z(x), model.weight, INT8_RANGE * thr.value)
            )
            saturates_at = int8_saturation(content)
        manifest = Manifest(
            model_id=model_id,
            version=version,
            description=description,
            channel_kind=kind,
            schema_version=_schema_version(),
            features=features,
            normalisation=Normalisation(
                transform=["log10"] * len(features),
                eps=B.EPS,
                soft_clip=B.SOFT_CLIP,
                mean=model.mean.tolist(),
                std=model.std.tolist(),
            ),
            score=ScoreDef(
                definition=SCORE_DEFINITION,
                components=model.components,
                saturates_at=saturates_at,
            ),
            threshold=thr.value,
            calibration=Calibration(
                method="held-out contiguous segments: max segment quantile x margin",
                target_false_alarm_rate=target,
                estimated_false_alarm_rate=thr.estimated_false_alarm_rate,
                margin=margin,
                holdout_segments=thr.segments,
                windows=int(x.shape[0]),
                sample_rate_hz=sample_rates,
            ),
            dsp=dsp,
            quantization=quantization,
            sha256=sha256_of(content),
        )
        target_dir = out_dir if i == 0 else out_dir.with_name(f"{out_dir.name}-{quantization}")
        write_model(target_dir, manifest, content)
        out.manifests[quantization] = manifest
    return out


def _schema_version() -> str:
    from gateway.dsp.features import SCHEMA_VERSION

    return SCHEMA_VERSION


def int8_saturation(content: bytes) -> float:
    """The largest score an int8 model can output (its output tensor's range)."""
    from gateway.inference.runtime import ModelRunner

    r = ModelRunner(content)
    return (127.0 - r.out_zp) * r.out_scale
