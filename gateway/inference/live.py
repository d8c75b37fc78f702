"""``models calibrate --from-live``: learn from the features a running gateway has stored.

The gateway's journal (SQLite, WAL: readable while the gateway writes) holds every feature
frame. The last ``duration_s`` seconds (source time) of the frames of the scored channels are
the healthy data; they are cut into ``segments`` contiguous time slices for the held-out
threshold. Only rate-independent features are used (see ``gateway.inference.features``): band
energies whose upper edge lies below ``max_frequency_hz``, velocity, displacement, orders, and
envelope features when ``dsp.envelope_band_hz`` is fixed.
"""

from __future__ import annotations

import itertools
import json
import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from gateway.config.schema import GatewayConfig
from gateway.core.errors import ConfigError
from gateway.dsp.spectral import log_bands
from gateway.inference.calibrate import export_baseline
from gateway.inference.features import DEFAULT_MAX_FRACTION, model_features, requirements
from gateway.inference.manifest import Manifest
from gateway.store import layouts

F64 = npt.NDArray[np.float64]
_BAND = re.compile(r"^band_(\d+)_(\d+)hz_ms$")


@dataclass
class LiveResult:
    manifest: Manifest
    windows: int
    channels: list[str]
    span_s: float


def stored_frames(
    store: Path, channels: list[str], since_ns: int | None
) -> list[tuple[int, str, dict[str, float | None]]]:
    """``(ts_ns, channel, features)`` of the stored frames of ``channels``, in time order."""
    if not store.exists():
        raise ConfigError([("", f"{store}: no such store (is the gateway running?)")])
    db = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
    try:
        marks = ",".join("?" * len(channels))
        rows = db.execute(
            f"SELECT ts_ns, channel, payload FROM records WHERE kind = 'feature' "
            f"AND channel IN ({marks}) AND ts_ns >= ? ORDER BY ts_ns",
            (*channels, since_ns or 0),
        ).fetchall()
        known = layouts.load(db)
    except sqlite3.Error as exc:
        raise ConfigError([("", f"{store}: cannot read: {exc}")]) from None
    finally:
        db.close()
    out: list[tuple[int, str, dict[str, float | None]]] = []
    for t, c, p in rows:
        features = layouts.expand(json.loads(p), known).get("features")
        if isinstance(features, dict):  # (a row whose layout is unknown has none)
            out.append((int(t), str(c), features))
    return out


def calibrate_from_live(
    cfg: GatewayConfig,
    out_dir: Path,
    duration_s: float,
    *,
    kind: str = "vibration",
    model_id: str = "baseline",
    version: str | None = None,
    target: float = 0.01,
    margin: float = 1.5,
    max_frequency_hz: float | None = None,
    segments: int = 5,
) -> LiveResult:
    """Fit on the last ``duration_s`` seconds of stored features and write the model."""
    chans = [c for c, ch in cfg.channels.items() if ch.kind == kind]
    if not chans:
        raise ConfigError([("channels", f"no {kind} channel to learn from")])
    rates = {cfg.channels[c].sample_rate_hz for c in chans}
    if len(rates) != 1:
        raise ConfigError([("channels", f"{kind} channels differ in sample rate: {rates}")])
    fs = float(rates.pop() or 0.0)
    top = max_frequency_hz or DEFAULT_MAX_FRACTION * fs
    frames = stored_frames(cfg.store_path(), chans, None)
    if not frames:
        raise ConfigError([("", f"{cfg.store_path()}: no stored {kind} features yet")])
    end = frames[-1][0]
    start = end - round(duration_s * 1e9)
    if frames[0][0] > start:
        have = (end - frames[0][0]) / 1e9
        raise ConfigError(
            [("--duration", f"the store holds {have:.0f} s of features, fewer than {duration_s:g}")]
        )
    frames = [f for f in frames if f[0] >= start]
    names = tuple(frames[-1][2])
    chosen = [
        n
        for n in model_features(names, cfg.dsp.envelope_band_hz is not None)
        if not (m := _BAND.match(n)) or float(m.group(2)) <= top
    ]
    if not chosen:
        raise ConfigError([("dsp.bands_hz", f"no feature band lies below {top:g} Hz")])
    ts = np.array([f[0] for f in frames])
    x = np.array([[np.nan if (v := f[2].get(n)) is None else v for n in chosen] for f in frames])
    ok = np.isfinite(x).all(axis=1)
    x, ts = x[ok], ts[ok]
    edges = np.linspace(start, end + 1, segments + 1)
    parts = [x[(ts >= a) & (ts < b)] for a, b in itertools.pairwise(edges)]
    hi = max(
        [float(m.group(2)) for n in chosen if (m := _BAND.match(n))]
        + [cfg.dsp.velocity_band_hz[1]]
        + [cfg.dsp.envelope_band_hz[1] if cfg.dsp.envelope_band_hz else 0.0]
    )
    bands = cfg.dsp.bands_hz or log_bands(fs, cfg.dsp.band_count)  # as the DSP built them
    dsp = cfg.dsp.model_copy(update={"bands_hz": [b for b in bands if b[1] <= top]})
    exported = export_baseline(
        parts,
        chosen,
        out_dir,
        dsp=requirements(dsp, fs, hi),
        kind=kind,
        model_id=model_id,
        version=version,
        description=f"healthy baseline learned from {duration_s:g} s of live features",
        target=target,
        margin=margin,
        sample_rates=[fs],
        min_segments=segments,
    )
    return LiveResult(exported.manifests["float32"], int(x.shape[0]), chans, duration_s)
