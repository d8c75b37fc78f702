"""Which features a model may consume, and the DSP settings that make them rate-independent.

A model must not see the sample rate. Time-domain statistics (rms, peak, kurtosis...) and the
default log bands (which end at Nyquist) change with the rate even on the same machine, so models
consume only features defined on fixed bands in Hz: energies of explicit ``bands_hz``, velocity
and displacement over the velocity band, order amplitudes, and envelope features when the
envelope band is fixed. All of these lie below ``max_frequency_hz``, which must be below the
Nyquist frequency of every input the model scores.
"""

from __future__ import annotations

import re

from gateway.dsp.config import DspConfig
from gateway.dsp.spectral import log_bands
from gateway.inference.manifest import DspRequirements

_ALWAYS = re.compile(r"^(band_\d+_\d+hz_ms|velocity_rms|displacement_pp|order_\dx_amp)$")
_ENVELOPE = re.compile(r"^(envelope_rms|env_[a-z]+(_2x)?_amp)$")
#: default upper edge of the model's bands, as a fraction of the input's sample rate
DEFAULT_MAX_FRACTION = 0.4


def model_features(names: tuple[str, ...], envelope_fixed: bool) -> list[str]:
    """The rate-independent subset of ``names``, in order."""
    return [n for n in names if _ALWAYS.match(n) or (envelope_fixed and _ENVELOPE.match(n))]


def calibration_dsp(
    base: DspConfig, sample_rate_hz: float, max_frequency_hz: float | None = None
) -> tuple[DspConfig, float]:
    """``base`` with explicit bands in Hz ending at ``max_frequency_hz`` (default 0.4 x the
    sample rate), and the highest frequency any model feature uses."""
    top = max_frequency_hz or DEFAULT_MAX_FRACTION * sample_rate_hz
    if top >= sample_rate_hz / 2:
        raise ValueError(
            f"max frequency {top} Hz must be below the Nyquist frequency {sample_rate_hz / 2} Hz"
        )
    bands = base.bands_hz or log_bands(2 * top, base.band_count)
    bands = [(lo, hi) for lo, hi in bands if hi <= top]
    if not bands:
        raise ValueError(f"no configured band lies below {top} Hz")
    hi = max(
        max(b[1] for b in bands),
        base.velocity_band_hz[1],
        base.envelope_band_hz[1] if base.envelope_band_hz else 0.0,
    )
    if hi >= sample_rate_hz / 2:
        raise ValueError(
            f"features up to {hi} Hz need a sample rate above {2 * hi} Hz (got {sample_rate_hz})"
        )
    cfg = base.model_copy(update={"bands_hz": bands})
    return cfg, float(hi)


def requirements(dsp: DspConfig, sample_rate_hz: float, max_frequency_hz: float) -> DspRequirements:
    return DspRequirements(
        bands_hz=list(dsp.bands_hz or []),
        velocity_band_hz=dsp.velocity_band_hz,
        envelope_band_hz=dsp.envelope_band_hz,
        window_s=dsp.window / sample_rate_hz,
        hop_fraction=dsp.hop / dsp.window,
        max_frequency_hz=max_frequency_hz,
    )


def window_for(req: DspRequirements, sample_rate_hz: float) -> int:
    """The window in samples at ``sample_rate_hz`` that lasts ``req.window_s``."""
    return max(64, round(req.window_s * sample_rate_hz))


def window_mismatch(req: DspRequirements, window: int, sample_rate_hz: float) -> str | None:
    """Why a ``window``-sample window at ``sample_rate_hz`` differs from the model's, or None."""
    have = window / sample_rate_hz
    if abs(have - req.window_s) > 0.02 * req.window_s:
        return (
            f"window lasts {have:.4g} s, the model's features were computed on "
            f"{req.window_s:.4g} s windows (dsp.window = {window_for(req, sample_rate_hz)})"
        )
    return None


def dsp_for(
    req: DspRequirements, sample_rate_hz: float, base: DspConfig | None = None
) -> DspConfig:
    """A DSP config computing, at ``sample_rate_hz``, the features a model with ``req``
    consumes (same bands, same window duration)."""
    base = base or DspConfig()
    window = window_for(req, sample_rate_hz)
    return base.model_copy(
        update={
            "bands_hz": list(req.bands_hz) or base.bands_hz,
            "velocity_band_hz": req.velocity_band_hz,
            "envelope_band_hz": req.envelope_band_hz,
            "window": window,
            "hop": max(1, round(window * req.hop_fraction)),
        }
    )
