"""Physics of a simulated rotating machine, generated in blocks (never per sample).

Vibration (acceleration, g) is the sum of
- shaft harmonics at 1x, 2x, 3x running speed (imbalance raises 1x, misalignment 2x, looseness
  raises many harmonics), phase-continuous across blocks even when the speed changes;
- rolling-bearing defect impulses at BPFO (outer race) from the bearing geometry, with a slight
  jitter, each ringing a structural resonance (a damped second-order system, run as an IIR filter
  whose state carries across blocks);
- broadband Gaussian noise.
Temperature (degC) follows a first-order thermal model whose steady state rises with load and
with fault severity. A fault grows linearly from ``onset_s`` over ``growth_s`` of machine time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from scipy import signal


@dataclass(frozen=True)
class BearingGeometry:
    balls: int = 9
    ball_diameter_mm: float = 7.94
    pitch_diameter_mm: float = 39.04
    contact_angle_deg: float = 0.0

    def bpfo(self, shaft_hz: float) -> float:
        """Ball-pass frequency of the outer race, Hz."""
        ratio = self.ball_diameter_mm / self.pitch_diameter_mm
        return (
            self.balls
            / 2.0
            * shaft_hz
            * (1.0 - ratio * math.cos(math.radians(self.contact_angle_deg)))
        )


@dataclass
class MachineSpec:
    """Parameters of one simulated machine. Amplitudes are peak accelerations in g."""

    sample_rate_hz: float = 5120.0
    shaft_hz: float = 24.75
    harmonics_g: tuple[float, float, float] = (0.05, 0.02, 0.01)
    noise_g: float = 0.01
    bearing: BearingGeometry = field(default_factory=BearingGeometry)
    resonance_hz: float = 1800.0
    resonance_damping: float = 0.05
    fault: str = "none"  # "none" | "imbalance" | "outer_race"
    fault_max: float = 1.0  # g at full severity
    onset_s: float = 0.0
    growth_s: float = 600.0
    load: float = 0.7
    ambient_c: float = 25.0
    thermal_tau_s: float = 300.0
    load_rise_c: float = 30.0
    fault_rise_c: float = 25.0
    seed: int = 0


class Machine:
    """Generates contiguous blocks of samples; ``t_s`` is machine time at the next sample."""

    def __init__(self, spec: MachineSpec) -> None:
        self.spec = spec
        self.rng = np.random.default_rng(spec.seed)
        self.t_s = 0.0
        self.samples_out = 0
        self._shaft_phase = 0.0  # radians, of the 1x component
        self._next_impulse_s = 0.0
        self.temperature_c = spec.ambient_c + spec.load * spec.load_rise_c
        fs, f0, zeta = spec.sample_rate_hz, spec.resonance_hz, spec.resonance_damping
        w0 = 2 * math.pi * f0
        # resonator: impulse-invariant damped sine, unit peak response
        r = math.exp(-zeta * w0 / fs)
        wd = w0 * math.sqrt(1 - zeta**2) / fs
        self._b = np.array([0.0, math.sin(wd)])
        self._a = np.array([1.0, -2 * r * math.cos(wd), r * r])
        self._zi = np.zeros(2)

    def severity(self, t_s: float | None = None) -> float:
        """Fault severity in [0, 1] at machine time ``t_s``."""
        t = self.t_s if t_s is None else t_s
        if self.spec.fault == "none" or t < self.spec.onset_s:
            return 0.0
        return min(1.0, (t - self.spec.onset_s) / self.spec.growth_s)

    def vibration(self, n: int) -> npt.NDArray[np.float32]:
        """The next ``n`` acceleration samples (g)."""
        s = self.spec
        fs = s.sample_rate_hz
        sev = self.severity()
        phase = self._shaft_phase + 2 * math.pi * s.shaft_hz / fs * np.arange(n)
        amps = list(s.harmonics_g)
        if s.fault == "imbalance":
            amps[0] += s.fault_max * sev
        x = sum(a * np.sin(k * phase + 0.3 * k) for k, a in enumerate(amps, start=1))
        x = x + self.rng.normal(0.0, s.noise_g, n)
        impulses = np.zeros(n)
        if s.fault == "outer_race" and sev > 0:
            period = 1.0 / s.bearing.bpfo(s.shaft_hz)
            t_end = self.t_s + n / fs
            times = []
            t = max(self._next_impulse_s, self.t_s)
            while t < t_end:  # one iteration per impulse (~100/s), not per sample
                times.append(t)
                t += period * (1.0 + 0.01 * self.rng.standard_normal())
            self._next_impulse_s = t
            idx = np.clip(((np.array(times) - self.t_s) * fs).astype(int), 0, n - 1)
            np.add.at(impulses, idx, s.fault_max * sev)
        else:
            self._next_impulse_s = self.t_s
        rung, self._zi = signal.lfilter(self._b, self._a, impulses, zi=self._zi)
        self._shaft_phase = float(
            (self._shaft_phase + 2 * math.pi * s.shaft_hz * n / fs) % (2 * math.pi)
        )
        self._advance(n / fs)
        self.samples_out += n
        return np.asarray(x + rung, dtype=np.float32)

    def _advance(self, dt: float) -> None:
        s = self.spec
        steady = s.ambient_c + s.load * s.load_rise_c + self.severity() * s.fault_rise_c
        self.temperature_c += (steady - self.temperature_c) * (
            1.0 - math.exp(-dt / s.thermal_tau_s)
        )
        self.t_s += dt
