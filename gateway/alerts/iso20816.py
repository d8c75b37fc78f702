"""ISO 20816-3 (formerly ISO 10816-3) evaluation zones of broadband velocity RMS, in mm/s.

Zone A: new machines; B: unrestricted long-term operation; C: restricted operation;
D: vibration severe enough to cause damage. The boundaries depend on the machine group
(1: > 300 kW, 2: 15-300 kW) and the foundation (rigid or flexible).
"""

from __future__ import annotations

from typing import Literal

#: DSP feature holding the broadband velocity RMS of a vibration channel, in mm/s
VELOCITY_FEATURE = "velocity_rms"

MachineClass = Literal["group1_rigid", "group1_flexible", "group2_rigid", "group2_flexible"]

#: machine class -> upper boundaries of zones A, B and C (mm/s RMS)
BOUNDARIES: dict[str, tuple[float, float, float]] = {
    "group1_rigid": (2.3, 4.5, 7.1),
    "group1_flexible": (3.5, 7.1, 11.0),
    "group2_rigid": (1.4, 2.8, 4.5),
    "group2_flexible": (2.3, 4.5, 7.1),
}


def zone(machine_class: str, velocity_mm_s: float) -> str:
    """The zone letter (A-D) of a velocity RMS for a machine class."""
    ab, bc, cd = BOUNDARIES[machine_class]
    if velocity_mm_s < ab:
        return "A"
    if velocity_mm_s < bc:
        return "B"
    return "C" if velocity_mm_s < cd else "D"


def lower_boundary(machine_class: str, z: str) -> float:
    """Velocity (mm/s) at which zone ``z`` (B, C or D) starts."""
    return BOUNDARIES[machine_class]["BCD".index(z)]
