"""Per-channel feature extraction: time-domain and spectral features under one schema.

``ChannelExtractor`` is built once per waveform channel from its config (kind, sample rate, the
asset's speed and bearing geometry) and turns a batch of windows (k, N) into a (k, F) float64
array whose columns are ``names`` (units in ``units``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from gateway.config.plant import Asset, Channel
from gateway.dsp import features as F
from gateway.dsp.bearing import defect_orders
from gateway.dsp.config import DspConfig
from gateway.dsp.spectral import SpectralPlan, log_bands


def bearing_orders(asset: Asset | None) -> dict[str, float] | None:
    """BPFO, BPFI, BSF, FTF as multiples of shaft speed, from the asset's bearing geometry."""
    if asset is None or asset.bearing is None:
        return None
    b = asset.bearing
    return defect_orders(b.balls, b.ball_diameter_mm, b.pitch_diameter_mm, b.contact_angle_deg)


def _hashable(v: object) -> object:
    if isinstance(v, list):
        return tuple(v)
    if isinstance(v, dict):
        return tuple(sorted(v.items()))
    return v


class ChannelExtractor:
    """Features of one channel. Channels whose plans would be equal may share one through
    ``plans`` (a cache owned by the caller, e.g. one DSP processor): their windows can then be
    computed in one batch. A plan is not re-entrant, so a cache must not span threads."""

    def __init__(
        self,
        channel: Channel,
        asset: Asset | None,
        dsp: DspConfig,
        plans: dict[tuple[object, ...], SpectralPlan] | None = None,
    ) -> None:
        assert channel.sample_rate_hz is not None
        fs = channel.sample_rate_hz
        orders = bearing_orders(asset)
        params: dict[str, Any] = {
            "fs": fs,
            "n": dsp.window,
            "window": dsp.window_function,
            "kind": channel.kind,
            "bands": [(b[0], b[1]) for b in dsp.bands_hz]
            if dsp.bands_hz
            else log_bands(fs, dsp.band_count),
            "velocity_band": (dsp.velocity_band_hz[0], dsp.velocity_band_hz[1]),
            "shaft_hz": asset.shaft_speed_hz if asset else None,
            "has_speed": bool(asset and asset.speed_channel),
            "bearing_orders": orders,
            "envelope_band": (dsp.envelope_band_hz[0], dsp.envelope_band_hz[1])
            if dsp.envelope_band_hz
            else None,
        }
        key = tuple((k, _hashable(v)) for k, v in params.items())
        cache = plans if plans is not None else {}
        if key not in cache:
            cache[key] = SpectralPlan(**params)
        self.plan = cache[key]
        self.names = tuple(n for n, _ in F.TIME_DOMAIN) + self.plan.names
        self.units = F.units_for(F.TIME_DOMAIN, channel.unit) + self.plan.units

    def compute(
        self,
        windows: npt.NDArray[np.float32],
        shaft_hz: float | npt.NDArray[np.float64] | None = None,
        out: npt.NDArray[np.float64] | None = None,
    ) -> npt.NDArray[np.float64]:
        """Features of each window (k, N): (k, len(names)) float64, written into ``out`` when
        given, else a new array. The caller owns the result (it never aliases the plan's work
        buffers); ``shaft_hz`` is one speed for all windows or one per window."""
        res = np.empty((windows.shape[0], len(self.names))) if out is None else out
        nt = len(F.TIME_DOMAIN)
        self.plan.compute(windows, shaft_hz, out=res[:, nt:], time_domain=res[:, :nt])
        return res
