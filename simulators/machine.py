"""Physics of a simulated rotating machine, generated in blocks (vectorised, never per sample).

Every vibration channel (acceleration, g) is a mix, with its own gains and independent noise, of
- shaft harmonics at 1x, 2x, 3x of the instantaneous running speed, phase-continuous across
  blocks while the speed varies (imbalance raises 1x, misalignment 2x, looseness 1x..10x and
  0.5x); an optional gear mesh at ``gear_teeth`` x with shaft-rate sidebands;
- rolling-bearing defect impulses at BPFO, BPFI, BSF or FTF from the bearing geometry, with a
  slight period jitter, each ringing a structural resonance (a damped second-order system run as
  an IIR filter whose state carries across blocks); inner-race impulses are amplitude-modulated
  at shaft speed (the defect passes through the load zone once a turn), ball defects at the
  cage rate;
- broadband Gaussian noise.
The acoustic channel (sound pressure, Pa) hears the same sources through its own resonance plus
an airborne hum and noise. Temperature (degC) follows a first-order thermal model whose steady
state rises with load and fault severity.

Two clocks: *real time* drives the sample stream (``samples = real seconds x rate``), *machine
time* (real time x ``speed``) drives degradation and temperature, so time acceleration compresses
a month of wear into minutes without changing the per-block signal statistics.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from scipy import signal

from gateway.dsp.bearing import defect_orders

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]

BEARING_FAULTS = ("outer_race", "inner_race", "ball", "cage")
SHAFT_FAULTS = ("imbalance", "misalignment", "looseness", "gear")
FAULT_TYPES = ("none", *BEARING_FAULTS, *SHAFT_FAULTS)


@dataclass(frozen=True)
class BearingGeometry:
    """Rolling-element bearing geometry (default: SKF 6205 deep-groove ball bearing)."""

    balls: int = 9
    ball_diameter_mm: float = 7.94
    pitch_diameter_mm: float = 39.04
    contact_angle_deg: float = 0.0

    def orders(self) -> dict[str, float]:
        """Defect frequencies as multiples of shaft speed: BPFO, BPFI, BSF, FTF."""
        return defect_orders(
            self.balls, self.ball_diameter_mm, self.pitch_diameter_mm, self.contact_angle_deg
        )

    def bpfo(self, shaft_hz: float) -> float:
        return self.orders()["bpfo"] * shaft_hz


@dataclass(frozen=True)
class Fault:
    """A fault that grows from ``onset_s`` to ``failure_s`` (machine time). Severity rises as
    ``((t - onset) / (failure - onset)) ** growth_exponent``; 1.0 is functional failure.
    ``max_level`` is the fault's contribution at failure (g peak for shaft faults, g impulse
    amplitude for bearing faults)."""

    type: str
    onset_s: float = 0.0
    failure_s: float = 3600.0
    max_level: float = 1.0
    growth_exponent: float = 2.0

    def severity(self, t_s: F64 | float) -> F64:
        span = max(self.failure_s - self.onset_s, 1e-9)
        x = np.clip((np.asarray(t_s, dtype=np.float64) - self.onset_s) / span, 0.0, 1.0)
        return np.asarray(x**self.growth_exponent, dtype=np.float64)


SENSOR_FAULTS = ("stuck", "spikes", "disconnected", "saturated")


@dataclass(frozen=True)
class SensorFault:
    """A transducer fault on one channel (``vib0``.., ``mic`` or ``temp``) during real time
    ``[start_s, end_s)``: ``stuck`` holds the last good value, ``spikes`` adds +-``level`` spikes
    (``rate_hz`` per second), ``disconnected`` reads 0 (NaN for ``temp``), ``saturated`` clips
    at +-``level``."""

    type: str
    channel: str
    start_s: float
    end_s: float
    level: float = 5.0
    rate_hz: float = 5.0


@dataclass(frozen=True)
class MachineSpec:
    """Parameters of one simulated machine; amplitudes are peak values in g unless stated."""

    name: str = "machine"
    shaft_hz: float = 24.75
    speed_variation: float = 0.0  # relative amplitude of a slow sinusoidal speed change
    speed_variation_period_s: float = 20.0
    harmonics_g: tuple[float, float, float] = (0.05, 0.02, 0.01)
    noise_g: float = 0.01
    bearing: BearingGeometry = field(default_factory=BearingGeometry)
    resonance_hz: float = 3000.0
    resonance_damping: float = 0.05
    gear_teeth: int = 0
    gear_mesh_g: float = 0.0
    vibration_channels: int = 3
    vibration_rate_hz: float = 25_600.0
    acoustic_rate_hz: float = 48_000.0  # 0 disables the microphone
    acoustic_resonance_hz: float = 2500.0
    acoustic_noise_pa: float = 0.02
    acoustic_hum_pa: float = 0.05
    acoustic_per_g: float = 0.2  # Pa of sound per g of structural vibration
    temperature_rate_hz: float = 1.0
    load: float = 0.7
    ambient_c: float = 25.0
    thermal_tau_s: float = 1800.0
    load_rise_c: float = 30.0
    fault_rise_c: float = 25.0
    faults: tuple[Fault, ...] = ()
    sensor_faults: tuple[SensorFault, ...] = ()


@dataclass(frozen=True)
class ChannelBlock:
    """Samples of one waveform channel: ``samples[0]`` is sample ``first_index`` of the stream."""

    channel: str
    kind: str  # "vibration" | "acoustic"
    unit: str  # "g" | "Pa"
    sample_rate_hz: float
    first_index: int
    samples: F32


@dataclass(frozen=True)
class MachineSnapshot:
    """What ``Machine.advance`` produced: waveform blocks and the scalars at the block's end."""

    t_real_s: float
    t_machine_s: float
    shaft_hz: float
    temperature_c: float
    severity: dict[str, float]
    blocks: tuple[ChannelBlock, ...]


class _Resonator:
    """Damped second-order resonance as an IIR filter with state carried across blocks."""

    def __init__(self, f0: float, zeta: float, fs: float) -> None:
        f0 = min(f0, 0.45 * fs)
        w0 = 2 * math.pi * f0
        r = math.exp(-zeta * w0 / fs)
        wd = w0 * math.sqrt(1 - zeta * zeta) / fs
        self.b = np.array([0.0, math.sin(wd)])
        self.a = np.array([1.0, -2 * r * math.cos(wd), r * r])
        self.zi = np.zeros(2)

    def __call__(self, x: F64) -> F64:
        if x.shape[0] == 0:  # lfilter returns no usable final state for empty input
            return x
        if not x.any() and not self.zi.any():  # at rest and no input: the output is zero
            return x
        y, self.zi = signal.lfilter(self.b, self.a, x, zi=self.zi)
        return np.asarray(y)


class Machine:
    """Generates contiguous blocks for every channel of one machine.

    ``advance(t_real_s)`` returns every sample due between the previous call and real time
    ``t_real_s`` (at least one sample boundary apart per channel). Deterministic for a seed.
    """

    def __init__(self, spec: MachineSpec, seed: int = 0, speed: float = 1.0) -> None:
        self.spec, self.speed = spec, speed
        self.rng = np.random.default_rng(seed)
        self.t_real_s = 0.0
        self.temperature_c = spec.ambient_c + spec.load * spec.load_rise_c
        self._theta_rev = 0.0  # shaft angle in revolutions at t_real_s
        self._next_impulse: dict[str, float] = {}  # next impulse time (real s) per bearing fault
        fv, fa = spec.vibration_rate_hz, spec.acoustic_rate_hz
        self.channels: list[tuple[str, str, str, float]] = [
            (f"vib{i}", "vibration", "g", fv) for i in range(spec.vibration_channels)
        ]
        if fa > 0:
            self.channels.append(("mic", "acoustic", "Pa", fa))
        self._index = {c[0]: 0 for c in self.channels}
        self._held: dict[str, float] = {}  # last good value before a "stuck" fault
        self._temp_out: float | None = None  # the held temperature reading
        self._res = {
            c[0]: _Resonator(
                spec.acoustic_resonance_hz if c[1] == "acoustic" else spec.resonance_hz,
                spec.resonance_damping,
                c[3],
            )
            for c in self.channels
        }
        # per-channel mixing gains and phases: transducers at different positions see the
        # same sources differently (fixed per machine for a seed)
        grng = np.random.default_rng(seed + 7919)
        self._gain = {
            c[0]: 1.0 if i == 0 else float(grng.uniform(0.6, 1.0))
            for i, c in enumerate(self.channels)
        }
        self._phase = {
            c[0]: 0.0 if i == 0 else float(grng.uniform(0, 2 * math.pi))
            for i, c in enumerate(self.channels)
        }

    # -- kinematics ------------------------------------------------------------------------
    def shaft_hz_at(self, t_real: F64) -> F64:
        s = self.spec
        if s.speed_variation == 0:
            return np.full_like(t_real, s.shaft_hz)
        return s.shaft_hz * (
            1 + s.speed_variation * np.sin(2 * math.pi * t_real / s.speed_variation_period_s)
        )

    def machine_time(self, t_real_s: float) -> float:
        return t_real_s * self.speed

    def severity(self, t_machine_s: float) -> dict[str, float]:
        return {f.type: float(f.severity(t_machine_s)) for f in self.spec.faults}

    # -- generation --------------------------------------------------------------------------
    def advance(self, t_real_s: float) -> MachineSnapshot:
        if t_real_s < self.t_real_s:
            raise ValueError("time goes forward only")
        t0 = self.t_real_s
        # impulse times shared by every channel, so vibration and sound agree
        impulses = self._impulses(t0, t_real_s)
        blocks = []
        for name, kind, unit, fs in self.channels:
            first = self._index[name]
            last = math.floor(t_real_s * fs + 1e-9)
            n = last - first
            t = (first + np.arange(n)) / fs
            x = self._sensor(name, t, self._channel(name, kind, t, fs, impulses))
            self._index[name] = last
            blocks.append(ChannelBlock(name, kind, unit, fs, first, x))
        self._theta_rev = float(self._theta(np.array([t_real_s]))[0])
        self._thermal(t0, t_real_s)
        self.t_real_s = t_real_s
        tm = self.machine_time(t_real_s)
        # the temperature transmitter samples at temperature_rate_hz and holds its value
        rate = self.spec.temperature_rate_hz
        if self._temp_out is None or math.floor(t_real_s * rate) > math.floor(t0 * rate):
            self._temp_out = float(
                self._sensor(
                    "temp", np.array([t_real_s]), np.array([self.temperature_c], dtype=np.float32)
                )[0]
            )
        temp = self._temp_out
        return MachineSnapshot(
            t_real_s,
            tm,
            float(self.shaft_hz_at(np.array([t_real_s]))[0]),
            temp,
            self.severity(tm),
            tuple(blocks),
        )

    def _sensor(self, name: str, t: F64, y: F32) -> F32:
        """Apply the sensor faults of channel ``name`` active at times ``t`` to ``y``."""
        for f in self.spec.sensor_faults:
            if f.channel != name or y.shape[0] == 0:
                continue
            on = (t >= f.start_s) & (t < f.end_s)
            if not on.any():
                if t[-1] < f.start_s:
                    self._held[name] = float(y[-1])
                continue
            if f.type == "stuck":
                y[on] = self._held.setdefault(name, float(y[np.argmax(on)]))
            elif f.type == "spikes":
                hits = on & (self.rng.random(y.shape[0]) < f.rate_hz / self._rate(name))
                y[hits] += f.level * self.rng.choice([-1.0, 1.0], int(hits.sum()))
            elif f.type == "disconnected":
                y[on] = np.nan if name == "temp" else 0.0
            elif f.type == "saturated":
                y[on] = np.clip(y[on], -f.level, f.level)
        return y

    def _rate(self, name: str) -> float:
        return next((c[3] for c in self.channels if c[0] == name), self.spec.temperature_rate_hz)

    def _theta(self, t: F64) -> F64:
        """Shaft angle (revolutions) at real times ``t`` (integral of the speed, closed form)."""
        s = self.spec
        base = self._theta_rev + s.shaft_hz * (t - self.t_real_s)
        if s.speed_variation == 0:
            return np.asarray(base)
        k = s.shaft_hz * s.speed_variation * s.speed_variation_period_s / (2 * math.pi)
        w = 2 * math.pi / s.speed_variation_period_s
        return np.asarray(base + k * (np.cos(w * self.t_real_s) - np.cos(w * t)))

    def _channel(
        self, name: str, kind: str, t: F64, fs: float, impulses: list[tuple[F64, F64]]
    ) -> F32:
        s = self.spec
        n = t.shape[0]
        theta = self._theta(t)
        ph = 2 * math.pi * theta
        sev_t = self.machine_time(float(t[0])) if n else self.machine_time(self.t_real_s)
        amps = {1: s.harmonics_g[0], 2: s.harmonics_g[1], 3: s.harmonics_g[2]}
        half = 0.0
        for f in s.faults:
            sv = float(f.severity(sev_t))
            if f.type == "imbalance":
                amps[1] += f.max_level * sv
            elif f.type == "misalignment":
                amps[2] += f.max_level * sv
                amps[1] += 0.3 * f.max_level * sv
            elif f.type == "looseness":
                for k in range(1, 11):
                    amps[k] = amps.get(k, 0.0) + f.max_level * sv / k
                half = 0.3 * f.max_level * sv
        g, p0 = self._gain[name], self._phase[name]
        x = np.zeros(n)
        for k, a in amps.items():
            if a:
                x += a * np.sin(k * ph + p0 * k + 0.3 * k)
        if half:
            x += half * np.sin(0.5 * ph + p0)
        if s.gear_teeth and s.gear_mesh_g:
            gear_sev = max(
                (float(f.severity(sev_t)) for f in s.faults if f.type == "gear"), default=0.0
            )
            mesh = s.gear_teeth * ph
            x += s.gear_mesh_g * (1 + 2 * gear_sev * np.cos(ph)) * np.sin(mesh + p0)
        x *= g
        # bearing impulses on this channel's sample grid, ringing its resonance
        train = np.zeros(n)
        if n:
            for times, amp in impulses:
                idx = np.floor((times - t[0]) * fs + 0.5).astype(np.int64)
                ok = (idx >= 0) & (idx < n)
                np.add.at(train, idx[ok], amp[ok])
        rung = self._res[name](train)
        if kind == "acoustic":
            hum = s.acoustic_hum_pa * np.sin(2 * math.pi * 100.0 * t)  # 50 Hz mains, 2x line
            y = s.acoustic_per_g * (x + rung) + hum + s.acoustic_noise_pa * self._noise(n)
        else:
            y = x + g * rung + s.noise_g * self._noise(n)
        return y.astype(np.float32)

    def _noise(self, n: int) -> npt.NDArray[np.float32]:
        """Unit Gaussian noise (float32 draws: half the cost of float64)."""
        return self.rng.standard_normal(n, dtype=np.float32)

    def _impulses(self, t0: float, t1: float) -> list[tuple[F64, F64]]:
        """Impulse times (real s) and amplitudes in [t0, t1) for every active bearing fault."""
        s = self.spec
        orders = s.bearing.orders()
        out = []
        for f in s.faults:
            if f.type not in BEARING_FAULTS:
                continue
            sev = float(f.severity(self.machine_time(t0)))
            order = {
                "outer_race": orders["bpfo"],
                "inner_race": orders["bpfi"],
                "ball": 2 * orders["bsf"],
                "cage": orders["ftf"],
            }[f.type]
            mean_rate = order * s.shaft_hz
            start = self._next_impulse.get(f.type, t0)
            count = max(0, math.ceil((t1 - start) * mean_rate * 1.1) + 2)
            periods = (1.0 + 0.01 * self.rng.standard_normal(count)) / mean_rate
            times = start + np.concatenate(([0.0], np.cumsum(periods)))
            keep = times < t1
            self._next_impulse[f.type] = float(times[~keep][0])
            times = times[keep]
            amp = np.full(times.shape[0], f.max_level * sev)
            theta = self._theta(times)
            if f.type == "inner_race":  # through the load zone once per turn
                amp *= 0.5 * (1 + np.cos(2 * math.pi * theta))
            elif f.type == "ball":  # the ball's defect rotates with the cage
                amp *= 0.5 * (1 + np.cos(2 * math.pi * orders["ftf"] * theta))
            out.append((times, amp))
        return out

    def _thermal(self, t0: float, t1: float) -> None:
        s = self.spec
        dt = self.machine_time(t1) - self.machine_time(t0)
        sev = max(self.severity(self.machine_time(t1)).values(), default=0.0)
        steady = s.ambient_c + s.load * s.load_rise_c + sev * s.fault_rise_c
        self.temperature_c += (steady - self.temperature_c) * (1 - math.exp(-dt / s.thermal_tau_s))
