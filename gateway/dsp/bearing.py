"""Rolling-bearing defect frequencies from geometry, as multiples of shaft speed."""

from __future__ import annotations

import math


def defect_orders(
    balls: int, ball_diameter_mm: float, pitch_diameter_mm: float, contact_angle_deg: float = 0.0
) -> dict[str, float]:
    """BPFO, BPFI, BSF (ball spin) and FTF (cage) per shaft revolution, outer race fixed."""
    r = ball_diameter_mm / pitch_diameter_mm * math.cos(math.radians(contact_angle_deg))
    return {
        "bpfo": balls / 2 * (1 - r),
        "bpfi": balls / 2 * (1 + r),
        "bsf": pitch_diameter_mm / (2 * ball_diameter_mm) * (1 - r * r),
        "ftf": 0.5 * (1 - r),
    }
