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

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.hop > self.window:
            raise ValueError("hop must not exceed window (no sample may be skipped)")
        return self
