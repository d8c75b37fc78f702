"""Simulator physics as a vibration analyst checks it: spectra, envelope spectra, levels."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import signal

from gateway.core.errors import ConfigError
from simulators.machine import Fault, Machine, MachineSpec, SensorFault
from simulators.scenario import load_scenario, scenario_names

FS = 25_600.0


def record(m: Machine, seconds: float, step: float = 0.1, channel: int = 0) -> np.ndarray:
    out = []
    t = m.t_real_s
    for _ in range(round(seconds / step)):
        t += step
        out.append(m.advance(t).blocks[channel].samples)
    return np.concatenate(out).astype(np.float64)


def spectrum(x: np.ndarray, fs: float) -> tuple[np.ndarray, np.ndarray]:
    w = np.hanning(x.shape[0])
    return np.fft.rfftfreq(x.shape[0], 1 / fs), np.abs(np.fft.rfft(x * w))


def envelope_spectrum(
    x: np.ndarray, fs: float, band: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray]:
    sos = signal.butter(4, band, btype="bandpass", fs=fs, output="sos")
    env = np.abs(signal.hilbert(signal.sosfiltfilt(sos, x)))
    return spectrum(env - env.mean(), fs)


def test_healthy_spectrum_peaks_at_shaft_speed_and_rms_matches() -> None:
    spec = MachineSpec(shaft_hz=1485 / 60, acoustic_rate_hz=0)
    x = record(Machine(spec, seed=3), 4.0)
    f, a = spectrum(x, FS)
    peak = f[np.argmax(a[1:]) + 1]
    assert abs(peak - spec.shaft_hz) <= f[1]  # within one bin
    expected_rms = math.sqrt(sum(h * h / 2 for h in spec.harmonics_g) + spec.noise_g**2)
    assert np.sqrt(np.mean(x**2)) == pytest.approx(expected_rms, rel=0.03)


@pytest.mark.parametrize(("fault", "order"), [("outer_race", "bpfo"), ("inner_race", "bpfi")])
def test_bearing_fault_envelope_spectrum_peaks_at_defect_frequency(fault: str, order: str) -> None:
    spec = MachineSpec(
        acoustic_rate_hz=0, vibration_channels=1, faults=(Fault(fault, 0.0, 1.0, 1.5, 1.0),)
    )
    m = Machine(spec, seed=4)
    x = record(m, 8.0)
    f, a = envelope_spectrum(x, FS, (2000.0, 4500.0))
    band = (f > 10) & (f < 400)
    peak = f[band][np.argmax(a[band])]
    target = spec.bearing.orders()[order] * spec.shaft_hz
    assert abs(peak - target) <= 2 * f[1], (peak, target)
    if fault == "inner_race":  # load-zone modulation: sidebands at BPFI +- 1x
        side = a[np.argmin(np.abs(f - (target - spec.shaft_hz)))]
        floor = np.median(a[band])
        assert side > 5 * floor


def test_bearing_geometry_orders_match_textbook_6205() -> None:
    orders = MachineSpec().bearing.orders()
    # SKF 6205: BPFO 3.585, BPFI 5.415, BSF 2.357, FTF 0.398 (x shaft speed)
    assert orders["bpfo"] == pytest.approx(3.585, abs=0.01)
    assert orders["bpfi"] == pytest.approx(5.415, abs=0.01)
    assert orders["bsf"] == pytest.approx(2.357, abs=0.01)
    assert orders["ftf"] == pytest.approx(0.398, abs=0.01)


def test_imbalance_raises_1x_and_misalignment_2x() -> None:
    def harmonic_amps(fault: str) -> tuple[float, float]:
        spec = MachineSpec(
            acoustic_rate_hz=0, vibration_channels=1, faults=(Fault(fault, 0.0, 0.01, 0.5, 1.0),)
        )
        x = record(Machine(spec, seed=5), 2.0)
        f, a = spectrum(x, FS)
        at = lambda hz: a[np.argmin(np.abs(f - hz))]  # noqa: E731
        return at(spec.shaft_hz), at(2 * spec.shaft_hz)

    one_x, two_x = harmonic_amps("imbalance")
    assert one_x > 5 * two_x
    one_x, two_x = harmonic_amps("misalignment")
    assert two_x > one_x


def test_time_acceleration_compresses_degradation_not_signals() -> None:
    fault = (Fault("imbalance", 1000.0, 2000.0, 1.0, 1.0),)
    slow = Machine(MachineSpec(acoustic_rate_hz=0, faults=fault), seed=1, speed=1.0)
    fast = Machine(MachineSpec(acoustic_rate_hz=0, faults=fault), seed=1, speed=1000.0)
    s_slow, s_fast = slow.advance(1.5), fast.advance(1.5)
    assert s_slow.severity["imbalance"] == 0.0
    assert s_fast.severity["imbalance"] == pytest.approx(0.5)
    assert s_fast.t_machine_s == pytest.approx(1500.0)
    # same sample rate and block length whatever the speed
    assert [b.samples.shape for b in s_fast.blocks] == [b.samples.shape for b in s_slow.blocks]
    assert s_fast.temperature_c > s_slow.temperature_c


def test_same_seed_same_signal_and_contiguous_indices() -> None:
    a, b = Machine(MachineSpec(), seed=9), Machine(MachineSpec(), seed=9)
    sa, sb = a.advance(0.25), b.advance(0.25)
    for ba, bb in zip(sa.blocks, sb.blocks, strict=True):
        np.testing.assert_array_equal(ba.samples, bb.samples)
    nxt = a.advance(0.5)
    for first, second in zip(sa.blocks, nxt.blocks, strict=True):
        assert second.first_index == first.first_index + first.samples.shape[0]
    assert {blk.channel: blk.sample_rate_hz for blk in nxt.blocks} == {
        "vib0": 25_600.0,
        "vib1": 25_600.0,
        "vib2": 25_600.0,
        "mic": 48_000.0,
    }


def test_sensor_faults() -> None:
    spec = MachineSpec(
        vibration_rate_hz=1000,
        acoustic_rate_hz=0,
        sensor_faults=(
            SensorFault("stuck", "vib0", 1.0, 2.0),
            SensorFault("disconnected", "temp", 1.0, 2.0),
            SensorFault("saturated", "vib1", 0.0, 9.0, level=0.02),
            SensorFault("spikes", "vib2", 0.0, 9.0, level=5.0, rate_hz=20),
        ),
    )
    m = Machine(spec, seed=1)
    before = m.advance(1.0)
    during = m.advance(1.5)
    assert np.all(during.blocks[0].samples == before.blocks[0].samples[-1])  # held value
    assert math.isnan(during.temperature_c)
    assert np.abs(during.blocks[1].samples).max() <= 0.02
    assert np.abs(before.blocks[2].samples).max() > 4.0
    after = m.advance(2.5)
    assert np.ptp(after.blocks[0].samples) > 0
    assert math.isfinite(after.temperature_c)


def test_every_scenario_loads_and_bad_ones_name_the_key(tmp_path) -> None:  # type: ignore[no-untyped-def]
    assert {
        "healthy",
        "outer-race",
        "inner-race",
        "ball",
        "imbalance",
        "misalignment",
        "sensor-faults",
    } <= set(scenario_names())
    for name in scenario_names():
        assert load_scenario(name).machines(2, seed=1)
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[[faults]]\ntype = "outer_race"\nonset_days = 9\nfailure_days = 3\n'
        '[[sensor_faults]]\ntype = "stuck"\nchannel = "vib9"\nstart_s = 1\nduration_s = 1\n'
    )
    with pytest.raises(ConfigError) as exc:
        load_scenario(str(bad))
    paths = [p for p, _ in exc.value.errors]
    assert paths == ["faults.0", "sensor_faults.0.channel"]


def test_readme_register_map_is_the_printed_one() -> None:
    from pathlib import Path

    from simulators.modbus_map import describe

    readme = (Path(__file__).parents[2] / "simulators" / "README.md").read_text()
    assert describe(Machine(MachineSpec()).channels) in readme


def test_temperature_is_sampled_at_its_own_rate() -> None:
    spec = MachineSpec(
        vibration_rate_hz=1000,
        acoustic_rate_hz=0,
        vibration_channels=1,
        thermal_tau_s=10.0,
        faults=(Fault("imbalance", 0.0, 100.0, 0.1, 1.0),),
    )
    m = Machine(spec, seed=1, speed=50.0)  # fast warming: the value changes every tick
    temps = [m.advance(0.1 * i).temperature_c for i in range(1, 31)]
    changes = [i + 1 for i in range(len(temps) - 1) if temps[i + 1] != temps[i]]
    assert changes == [9, 19, 29]  # new readings at t = 1 s, 2 s, 3 s only (1 Hz)
