"""``pdm-gateway replay``: recorded waveforms through the live framing and features.

The same ``DspProcessor`` as the running gateway processes the samples, fed in blocks, so the
output equals what live operation computes on the same samples. One JSON line per window:
``{"t_s", "asset", "channel", "schema", "features", "score", "alert"}`` (``score`` and
``alert`` are null until models and alert rules are active in this version).
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from gateway.config.loader import load_config
from gateway.config.plant import Asset, Channel
from gateway.core.errors import ConfigError
from gateway.core.records import SampleBlock
from gateway.dsp.config import DspConfig
from gateway.dsp.recordings import read_recording
from gateway.dsp.stage import DspProcessor

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


def replay(
    inputs: list[Path],
    sample_rate_hz: float,
    out: TextIO,
    *,
    config: Path | None = None,
    kind: str = "vibration",
    unit: str = "g",
    progress: TextIO | None = None,
) -> tuple[dict[str, int], int]:
    """Process ``inputs`` and write JSON lines to ``out``; returns the windows per channel and
    the number of samples per channel."""
    names: list[str] = []
    columns = []
    for path in inputs:
        n, data = read_recording(path)
        names += n
        columns += [data[:, i] for i in range(data.shape[1])]
    lengths = {c.shape[0] for c in columns}
    if len(lengths) != 1:
        raise ValueError(f"inputs differ in length: {sorted(lengths)} samples")
    total = lengths.pop()
    plan = plan_replay(names, sample_rate_hz, config, kind, unit)
    proc = DspProcessor(plan.dsp, plan.channels, plan.assets, now_ns=lambda: 0)
    counts = dict.fromkeys(plan.columns, 0)
    for start in range(0, total, BLOCK):
        blocks = [
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
        for f in proc.process(list(blocks)):
            feats = {
                n: (None if not math.isfinite(v) else float(v))
                for n, v in zip(f.names, f.values.tolist(), strict=True)
            }
            out.write(
                json.dumps(
                    {
                        "t_s": f.start_ts_ns / 1e9,
                        "asset": f.asset,
                        "channel": f.channel,
                        "schema": f.schema_version,
                        "features": feats,
                        "score": None,
                        "alert": None,
                    }
                )
                + "\n"
            )
            counts[f.channel] += 1
        if progress is not None:
            done = min(total, start + BLOCK) / total
            progress.write(f"\r[{'#' * int(done * 40):40}] {done:6.1%}")
            progress.flush()
    if progress is not None:
        progress.write("\n")
    return counts, total


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
    if model is not None:
        print("pdm-gateway: --model: inference is not available in this version", file=sys.stderr)
        return 2
    try:
        with out_path.open("w") as out:
            counts, samples = replay(
                inputs,
                sample_rate_hz,
                out,
                config=config,
                kind=kind,
                unit=unit,
                progress=sys.stderr if sys.stderr.isatty() else None,
            )
    except ValueError as exc:
        print(f"pdm-gateway: {exc}", file=sys.stderr)
        return 2
    print(summary(counts, samples / sample_rate_hz), file=sys.stderr)
    return 0
