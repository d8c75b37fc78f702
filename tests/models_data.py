"""Simulated recordings for model tests: healthy runs and run-to-failure runs, written as .npy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import signal

from simulators.machine import Fault, Machine, MachineSpec

FS = 25_600.0
STEP_S = 0.5  # the machine advances in steps, so fault severity grows within a recording


def waveform(
    seconds: float,
    seed: int,
    *,
    load: float = 0.7,
    faults: tuple[Fault, ...] = (),
    decimate: int = 1,
    shaft_hz: float = 24.75,
) -> np.ndarray:
    """One vibration channel of a simulated machine, at ``FS / decimate`` Hz."""
    m = Machine(
        MachineSpec(
            vibration_channels=1,
            vibration_rate_hz=FS,
            acoustic_rate_hz=0.0,
            load=load,
            faults=faults,
            speed_variation=0.005,
            shaft_hz=shaft_hz,
        ),
        seed=seed,
    )
    steps = np.arange(STEP_S, seconds + STEP_S / 2, STEP_S)
    x = np.concatenate([m.advance(float(t)).blocks[0].samples for t in steps])
    if decimate > 1:  # the same machine recorded by a slower acquisition (anti-aliased)
        x = signal.decimate(x, decimate).astype(np.float32)
    return x


def record(path: Path, x: np.ndarray) -> Path:
    np.save(path, x)
    return path
