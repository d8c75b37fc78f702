"""Base for every configuration model: strict, frozen, unknown keys are errors."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class StrictModel(BaseModel):
    """A config section. Unknown keys fail validation; instances are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class Backoff(StrictModel):
    """Exponential backoff with jitter, in seconds:
    ``delay_n = min(max_s, initial_s * factor**n) * (1 ± jitter)``."""

    initial_s: float = Field(0.5, gt=0)
    max_s: float = Field(30.0, gt=0)
    factor: float = Field(2.0, ge=1.0, le=10.0)
    jitter: float = Field(0.2, ge=0.0, lt=1.0)

    def delay(self, attempt: int, rand: float = 0.5) -> float:
        """Delay before retry number ``attempt`` (0-based); ``rand`` in [0, 1) draws the jitter."""
        base = min(self.max_s, self.initial_s * self.factor ** min(attempt, 32))
        return base * (1.0 + self.jitter * (2.0 * rand - 1.0))
