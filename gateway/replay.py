"""``pdm-gateway replay``: recorded waveforms through the live framing and features.

The same ``DspProcessor`` as the running gateway processes the samples, fed in blocks, so the
output equals what live operation computes on the same samples. One JSON line per window:
``{"t_s", "asset", "channel", "schema", "features", "score", "alert"}`` (``score`` and
``alert`` are null without ``--model``; ``alert`` stays null until alert rules are active).
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np
import numpy.typing as npt

from gateway.config.loader import load_config
from gateway.config.plant import Asset, Channel
from gateway.core.errors import ConfigError
from gateway.core.records import FeatureFrame, Reading, SampleBlock
from gateway.dsp.config import DspConfig
from gateway.dsp.recordings import read_recording
from gateway.dsp.stage import DspProcessor
from gateway.inference.check import check_model_features
from gateway.inference.features import dsp_for
from gateway.inference.scorer import Scorer, load_scorer
from gateway.runtime.threads import limit_native_threads

F32 = npt.NDArray[np.float32]
BLOCK = 65_536  # samples per channel fed at a time (framing is block-size independent)


@dataclass
class ReplayPlan:
    dsp: DspConfig
    channels: dict[str, Channel]
    assets: dict[str, Asset]
    columns: list[str]  # channel id of each input column, in order


def plan_replay(
    names: list[str], sample_rate_hz: float, config: Path | None, kind: str, unit: str
) -> ReplayPlan:
    """Map input columns to channels: from ``config`` (its waveform channels in declaration
    order) or, without one, one ``kind`` channel per column in ``unit``, all in asset
    ``replay``."""
    if config is None:
        ch = {
            n: Channel.model_validate(
                {"kind": kind, "unit": unit, "sample_rate_hz": sample_rate_hz}
            )
            for n in names
        }
        return ReplayPlan(DspConfig(), ch, {"replay": Asset(channels=list(ch))}, names)
    cfg = load_config(config)
    waveform = [c for c, ch in cfg.channels.items() if ch.is_waveform]
    if len(waveform) != len(names):
        raise ConfigError(
            [
                (
                    "",
                    f"{config}: {len(waveform)} waveform channels, "
                    f"but the inputs have {len(names)} columns",
                )
            ]
        )
    for c in waveform:
        if cfg.channels[c].sample_rate_hz != sample_rate_hz:
            raise ConfigError(
                [
                    (
                        f"channels.{c}.sample_rate_hz",
                        f"is {cfg.channels[c].sample_rate_hz}, inputs are {sample_rate_hz}",
                    )
                ]
            )
    return ReplayPlan(cfg.dsp, dict(cfg.channels), dict(cfg.assets), waveform)


def load_inputs(inputs: list[Path]) -> tuple[list[str], list[F32], int]:
    """Column names, columns and their common length over all ``inputs``."""
    names: list[str] = []
    columns: list[F32] = []
    for path in inputs:
        n, data = read_recording(path)
        names += n
        columns += [data[:, i] for i in range(data.shape[1])]
    lengths = {c.shape[0] for c in columns}
    if len(lengths) != 1:
        raise ValueError(f"inputs differ in length: {sorted(lengths)} samples")
    return names, columns, lengths.pop()


def iter_frames(
    plan: ReplayPlan,
    columns: list[F32],
    sample_rate_hz: float,
    progress: TextIO | None = None,
) -> Iterator[list[FeatureFrame]]:
    """The frames of each block of ``BLOCK`` samples per channel, in time order."""
    total = columns[0].shape[0]
    proc = DspProcessor(plan.dsp, plan.channels, plan.assets, now_ns=lambda: 0)
    for start in range(0, total, BLOCK):
        blocks: list[SampleBlock | Reading] = [
            SampleBlock(
                ch,
                round(start / sample_rate_hz * 1e9),
                0,
                sample_rate_hz,
                col[start : start + BLOCK].copy(),
                start,
            )
            for ch, col in zip(plan.columns, columns, strict=True)
        ]
        yield proc.process(blocks)
        if progress is not None:
            done = min(total, start + BLOCK) / total
            progress.write(f"\r[{'#' * int(done * 40):40}] {done:6.1%}")
            progress.flush()
    if progress is not None:
        progress.write("\n")


def replay(
    inputs: list[Path],
    sample_rate_hz: float,
    out: TextIO,
    *,
    config: Path | None = None,
    kind: str = "vibration",
    unit: str = "g",
    progress: TextIO | None = None,
    model: Scorer | None = None,
) -> tuple[dict[str, int], int]:
    """Process ``inputs`` and write JSON lines to ``out``; returns the windows per channel and
    the number of samples per channel. With ``model``, frames are computed with the DSP settings
    its manifest names and each frame carrying its features gets a score (``{"value",
    "threshold", "above", "model_id", "model_version"}``)."""
    names, columns, total = load_inputs(inputs)
    plan = plan_replay(names, sample_rate_hz, config, kind, unit)
    if model is not None:
        plan = model_plan(plan, model, sample_rate_hz)
    counts = dict.fromkeys(plan.columns, 0)
    for frames in iter_frames(plan, columns, sample_rate_hz, progress):
        scores = score_frames(model, frames) if model is not None else [None] * len(frames)
        for f, sc in zip(frames, scores, strict=True):
            feats = {
                n: (None if not math.isfinite(v) else float(v))
                for n, v in zip(f.names, f.values.tolist(), strict=True)
            }
            score = None
            if sc is not None and model is not None:
                score = {
                    "value": sc,
                    "threshold": model.threshold,
                    "above": sc > model.threshold,
                    "model_id": model.model_id,
                    "model_version": model.version,
                }
            out.write(
                json.dumps(
                    {
                        "t_s": f.start_ts_ns / 1e9,
                        "asset": f.asset,
                        "channel": f.channel,
                        "schema": f.schema_version,
                        "features": feats,
                        "score": score,
                        "alert": None,
                    }
                )
                + "\n"
            )
            counts[f.channel] += 1
    return counts, total


def model_plan(plan: ReplayPlan, model: Scorer, sample_rate_hz: float) -> ReplayPlan:
    """``plan`` computing the features ``model`` consumes; ``ConfigError`` if the input's rate
    cannot give them or the DSP does not produce them."""
    m = model.manifest
    if m.dsp.max_frequency_hz >= sample_rate_hz / 2:
        raise ConfigError(
            [
                (
                    "--sample-rate",
                    f"model {m.model_id} uses features up to {m.dsp.max_frequency_hz} Hz: "
                    f"needs a sample rate above {2 * m.dsp.max_frequency_hz} Hz",
                )
            ]
        )
    dsp = dsp_for(m.dsp, sample_rate_hz, plan.dsp)
    new = ReplayPlan(dsp, plan.channels, plan.assets, plan.columns)
    errors = check_model_features(m, new.channels, new.assets, dsp, key="--model")
    if errors:
        raise ConfigError(errors)
    return new


def score_frames(model: Scorer, frames: list[FeatureFrame]) -> list[float | None]:
    """Score of each frame (None where the model's features are absent or not finite)."""
    out: list[float | None] = [None] * len(frames)
    rows, where = [], []
    for i, f in enumerate(frames):
        idx = model.columns(f.names)
        if idx is None:
            continue
        x = f.values[idx]
        if np.isfinite(x).all():
            rows.append(x)
            where.append(i)
    if rows:
        for i, s in zip(where, model.score(np.stack(rows)).tolist(), strict=True):
            out[i] = s
    return out


def summary(counts: dict[str, int], seconds: float) -> str:
    per = ", ".join(f"{c}: {n}" for c, n in counts.items())
    return f"replayed {seconds:.1f} s of {len(counts)} channel(s); windows per channel: {per}"


def main_replay(
    inputs: list[Path],
    sample_rate_hz: float,
    out_path: Path,
    config: Path | None,
    model: Path | None,
    kind: str,
    unit: str,
) -> int:
    limit_native_threads()
    try:
        scorer = load_scorer(model) if model is not None else None
        with out_path.open("w") as out:
            counts, samples = replay(
                inputs,
                sample_rate_hz,
                out,
                config=config,
                kind=kind,
                unit=unit,
                progress=sys.stderr if sys.stderr.isatty() else None,
                model=scorer,
            )
    except ValueError as exc:
        print(f"pdm-gateway: {exc}", file=sys.stderr)
        return 2
    print(summary(counts, samples / sample_rate_hz), file=sys.stderr)
    return 0
