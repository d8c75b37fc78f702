"""Configuration schema of the DSP stage (``[dsp]``)."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import Field, model_validator

from gateway.core.configbase import StrictModel

WindowFunction = Literal["hann", "hamming", "blackman", "flattop", "rectangular"]


class DspConfig(StrictModel):
    """Framing of waveform channels: windows of ``window`` samples every ``hop`` samples."""

    window: int = Field(4096, ge=64, le=1 << 20)
    hop: int = Field(2048, ge=1)
    window_function: WindowFunction = "hann"
    #: spectral energy bands in Hz as [low, high] pairs; default: ``band_count`` log-spaced
    #: bands from 10 Hz to Nyquist
    bands_hz: list[tuple[float, float]] | None = None
    band_count: int = Field(8, ge=1, le=64)
    #: ISO 20816 velocity RMS band
    velocity_band_hz: tuple[float, float] = (10.0, 1000.0)
    #: envelope demodulation band; default: the 2 kHz band above 1 kHz with the most energy
    envelope_band_hz: tuple[float, float] | None = None
    #: how long the stage may hold the blocks it takes to gather those arriving just after
    #: them into the same batch: larger batches cost much less CPU per window. It only waits
    #: while blocks arrive closer together than this, so it adds at most this much to a
    #: window's latency, and nothing under a light load; 0: never waits
    batch_wait_ms: float = Field(8.0, ge=0, le=1000)

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.hop > self.window:
            raise ValueError("hop must not exceed window (no sample may be skipped)")
        pairs = [("velocity_band_hz", self.velocity_band_hz)]
        if self.envelope_band_hz:
            pairs.append(("envelope_band_hz", self.envelope_band_hz))
        pairs += [(f"bands_hz.{i}", b) for i, b in enumerate(self.bands_hz or [])]
        for key, (lo, hi) in pairs:
            if not 0 <= lo < hi:
                raise ValueError(f"{key}: need 0 <= low < high")
        return self
