"""Per-channel feature extraction: time-domain and spectral features under one schema.

``ChannelExtractor`` is built once per waveform channel from its config (kind, sample rate, the
asset's speed and bearing geometry) and turns a batch of windows (k, N) into a (k, F) float64
array whose columns are ``names`` (units in ``units``).
"""

from __future__ import annotations

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


class ChannelExtractor:
    def __init__(self, channel: Channel, asset: Asset | None, dsp: DspConfig) -> None:
        assert channel.sample_rate_hz is not None
        fs = channel.sample_rate_hz
        self.plan = SpectralPlan(
            fs=fs,
            n=dsp.window,
            window=dsp.window_function,
            kind=channel.kind,
            bands=[(b[0], b[1]) for b in dsp.bands_hz]
            if dsp.bands_hz
            else log_bands(fs, dsp.band_count),
            velocity_band=(dsp.velocity_band_hz[0], dsp.velocity_band_hz[1]),
            shaft_hz=asset.shaft_speed_hz if asset else None,
            has_speed=bool(asset and asset.speed_channel),
            bearing_orders=bearing_orders(asset),
            envelope_band=(dsp.envelope_band_hz[0], dsp.envelope_band_hz[1])
            if dsp.envelope_band_hz
            else None,
        )
        self.names = tuple(n for n, _ in F.TIME_DOMAIN) + self.plan.names
        self.units = F.units_for(F.TIME_DOMAIN, channel.unit) + self.plan.units

    def compute(
        self, windows: npt.NDArray[np.float32], shaft_hz: float | None = None
    ) -> npt.NDArray[np.float64]:
        """Features of each window: (k, len(names)) float64."""
        td = F.time_domain(windows)
        sp = self.plan.compute(windows, shaft_hz)
        return np.concatenate((td, sp.astype(np.float64)), axis=1)
