"""Spectral features against closed-form values and against the simulators' physics."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gateway.dsp.spectral import SpectralPlan, a_weighting_db
from simulators.machine import Fault, Machine, MachineSpec

FS, N = 25_600.0, 4096
ORDERS = MachineSpec().bearing.orders()


def feats(plan: SpectralPlan, x: np.ndarray) -> dict[str, float]:
    return dict(
        zip(plan.names, plan.compute(np.atleast_2d(x).astype(np.float32)).mean(axis=0), strict=True)
    )


def tone(a: float, f: float, n: int = N, fs: float = FS) -> np.ndarray:
    return a * np.sin(2 * np.pi * f * np.arange(n) / fs)


@pytest.mark.parametrize("f", [50.0, 100.0, 400.0])
def test_velocity_rms_of_an_acceleration_sine(f: float) -> None:
    a = 0.7  # g
    out = feats(SpectralPlan(FS, N), tone(a, f))
    expected = a * 9806.65 / (2 * math.pi * f) / math.sqrt(2)  # mm/s
    assert out["velocity_rms"] == pytest.approx(expected, rel=0.01)
    assert out["dominant_freq"] == pytest.approx(f, abs=FS / N)
    assert out["dominant_amp"] == pytest.approx(a, rel=0.02)


def test_velocity_band_excludes_out_of_band_tones() -> None:
    out = feats(SpectralPlan(FS, N), tone(1.0, 3000.0))
    assert out["velocity_rms"] < 0.01


def test_band_energies_obey_parseval() -> None:
    plan = SpectralPlan(FS, N, bands=[(0.0, 1000.0), (1000.0, 5000.0), (5000.0, FS)])
    x = np.random.default_rng(1).standard_normal((4, N)).astype(np.float32)
    got = plan.compute(x)[:, :3].sum(axis=1)
    w = plan.w.astype(np.float64)
    want = ((x.astype(np.float64) * w) ** 2).sum(axis=1) / (w**2).sum()
    np.testing.assert_allclose(got, want, rtol=1e-4)


def test_orders_read_harmonic_amplitudes() -> None:
    shaft, n = 25.0, 4 * N
    x = tone(0.3, shaft, n) + tone(0.1, 2 * shaft, n) + tone(0.05, 3 * shaft, n)
    out = feats(SpectralPlan(FS, n, shaft_hz=shaft), x)
    got = [out["order_1x_amp"], out["order_2x_amp"], out["order_3x_amp"]]
    assert got == pytest.approx([0.3, 0.1, 0.05], rel=0.05)


def test_envelope_spectrum_peaks_at_the_modulation_frequency() -> None:
    """Impulses at 97 Hz ringing a 4 kHz resonance: the envelope spectrum peaks at 97 Hz."""
    n = 4 * N
    t = np.arange(n) / FS
    impulses = np.zeros(n)
    impulses[(np.arange(0, t[-1], 1 / 97.0) * FS).astype(int)] = 1.0
    ring = np.exp(-300 * t[:400]) * np.sin(2 * np.pi * 4000 * t[:400])
    x = np.convolve(impulses, ring)[:n] + 0.01 * np.random.default_rng(0).standard_normal(n)
    plan = SpectralPlan(FS, n, envelope_band=(3000.0, 5000.0))
    amp, _, freqs = plan._envelope(*_spec(plan, x))
    band = (freqs > 20) & (freqs < 500)
    assert freqs[band][np.argmax(amp[0][band])] == pytest.approx(97.0, abs=2 * FS / n)


def _spec(plan: SpectralPlan, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    import scipy.fft

    spec = scipy.fft.rfft(x[None, :].astype(np.float32) * plan.w, axis=1)
    return spec, (np.abs(spec) ** 2).astype(np.float32)


def test_a_weighting_and_laeq_of_a_94_db_tone() -> None:
    assert a_weighting_db(np.array([1000.0]))[0] == pytest.approx(0.0, abs=0.05)
    assert a_weighting_db(np.array([100.0]))[0] == pytest.approx(-19.1, abs=0.1)
    fs = 48_000.0
    plan = SpectralPlan(fs, 8192, kind="acoustic")
    out = feats(plan, tone(math.sqrt(2), 1000.0, 8192, fs))  # 1 Pa RMS = 94 dB SPL
    assert out["laeq"] == pytest.approx(94.0, abs=0.2)
    assert out["third_octave_1000hz"] == pytest.approx(94.0, abs=0.5)
    assert out["third_octave_100hz"] < 40


@pytest.mark.parametrize(
    ("fault", "feature"),
    [("outer_race", "env_bpfo_amp"), ("inner_race", "env_bpfi_amp"), ("ball", "env_bsf_2x_amp")],
)
def test_bearing_defect_amplitude_rises_with_the_fault(fault: str, feature: str) -> None:
    plan = SpectralPlan(FS, N, shaft_hz=24.75, bearing_orders=ORDERS)

    def level(severity_time: float) -> float:
        m = Machine(
            MachineSpec(
                acoustic_rate_hz=0,
                vibration_channels=1,
                faults=(Fault(fault, 0.0, 10.0, 2.0, 1.0),),
            ),
            seed=2,
            speed=1.0,
        )
        m.advance(severity_time)
        x = m.advance(severity_time + 1.0).blocks[0].samples[: 6 * N].reshape(6, N)
        return feats(plan, x)[feature]

    levels = [level(t) for t in (0.0, 3.0, 9.0)]
    assert levels[0] < levels[1] < levels[2]
    assert levels[2] > 10 * levels[0]


def test_one_x_rises_with_imbalance() -> None:
    plan = SpectralPlan(FS, N, shaft_hz=24.75)

    def one_x(t: float) -> float:
        m = Machine(
            MachineSpec(
                acoustic_rate_hz=0,
                vibration_channels=1,
                faults=(Fault("imbalance", 0.0, 10.0, 1.0, 1.0),),
            ),
            seed=3,
        )
        m.advance(t)
        return feats(plan, m.advance(t + 0.5).blocks[0].samples[: 2 * N].reshape(2, N))[
            "order_1x_amp"
        ]

    assert one_x(0.0) < one_x(5.0) < one_x(9.0)


@pytest.mark.parametrize("depth", [0.0, 0.2, 0.5])
def test_envelope_levels_of_an_amplitude_modulated_carrier(depth: float) -> None:
    """(1 + d cos(2 pi fm t)) cos(2 pi 5 kHz t): envelope RMS d / sqrt(2), the line at fm ~ d
    (within the Hann window's scalloping, <= 1.4 dB), and none for a steady carrier."""
    shaft = 25.0
    plan = SpectralPlan(
        FS, N, envelope_band=(4000.0, 6000.0), shaft_hz=shaft, bearing_orders=ORDERS
    )
    t = np.arange(N) / FS
    fm = ORDERS["bpfo"] * shaft
    x = (1 + depth * np.cos(2 * np.pi * fm * t)) * np.cos(2 * np.pi * 5000.0 * t)
    out = feats(plan, x)
    assert out["envelope_rms"] == pytest.approx(depth / math.sqrt(2), abs=0.005)
    assert out["env_bpfo_amp"] == pytest.approx(depth, rel=0.16, abs=0.005)


def test_dominant_line_is_never_dc_even_where_dc_is_the_largest() -> None:
    plan = SpectralPlan(FS, N)
    col = plan.names.index("dominant_freq")
    f = 30 * FS / N  # on a bin
    # (through the Hann window the offset reads 10 at DC and 5 in bin 1, the tone 8)
    x = np.vstack([5.0 + tone(8.0, f), tone(1.0, f), np.full(N, 2.0), np.zeros(N)])
    got = plan.compute(x.astype(np.float32))[:, col]
    # offset rows: DC is the largest line, the tone is still the dominant one
    assert got[:2].tolist() == [pytest.approx(f)] * 2
    # no line but DC (constant) or none at all: the first bin after DC
    assert got[2:].tolist() == [FS / N] * 2
