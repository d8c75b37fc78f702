"""On-site commissioning: ``models calibrate`` on simulated healthy runs, then scoring new runs.

Every recording comes from the machine simulator: healthy runs with other seeds and loads than
the calibration data, a run-to-failure (outer-race spall growing to failure within the run), and
the same machine recorded at half the sample rate.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gateway.core.errors import ConfigError
from gateway.dsp.config import DspConfig
from gateway.inference.calibrate import CalibrationResult, calibrate, recording_features
from gateway.inference.scorer import load_scorer
from gateway.replay import replay
from simulators.machine import Fault
from tests.models_data import FS, record, waveform

RUN_S = 30.0
DSP = DspConfig(window=2048, hop=1024)  # 80 ms windows: enough of them in short runs


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("runs")
    for i, load in enumerate((0.6, 0.7, 0.8)):
        record(d / f"healthy{i}.npy", waveform(RUN_S, seed=10 + i, load=load))
    return d


@pytest.fixture(scope="module")
def model(runs: Path, tmp_path_factory: pytest.TempPathFactory) -> CalibrationResult:
    out = tmp_path_factory.mktemp("model")
    return calibrate(
        sorted(runs.glob("healthy*.npy")),
        FS,
        out,
        base_dsp=DSP,
        model_id="pump-baseline",
        version="1",
        max_frequency_hz=5000.0,
    )


def scores(model_dir: Path, path: Path, fs: float) -> np.ndarray:
    buf = io.StringIO()
    replay([path], fs, buf, model=load_scorer(model_dir))
    lines = [json.loads(line) for line in buf.getvalue().splitlines()]
    assert all(line["score"]["model_id"] == "pump-baseline" for line in lines)
    return np.array([line["score"]["value"] for line in lines])


def test_calibrated_tflite_equals_numpy(model: CalibrationResult, tmp_path: Path) -> None:
    m = model.manifest
    assert model.windows == [749, 749, 749]
    assert m.calibration.windows == sum(model.windows)
    assert m.calibration.holdout_segments >= 5
    assert m.calibration.estimated_false_alarm_rate <= m.calibration.target_false_alarm_rate
    assert m.calibration.margin == 1.5
    assert all(hi <= 5000.0 for _, hi in m.dsp.bands_hz)
    assert not any(f in m.features for f in ("rms", "kurtosis", "peak"))  # rate-dependent
    scorer = load_scorer(model.out_dir)
    x = np.concatenate(model.features)
    np.testing.assert_allclose(scorer.score(x), model.baseline.score(x), rtol=1e-4, atol=1e-4)


def test_fault_crosses_threshold_before_failure(model: CalibrationResult, tmp_path: Path) -> None:
    fault = Fault("outer_race", onset_s=5.0, failure_s=RUN_S, max_level=0.5, growth_exponent=2.0)
    x = waveform(RUN_S, seed=77, faults=(fault,))
    s = scores(model.out_dir, record(tmp_path / "fault.npy", x), FS)
    above = s > model.manifest.threshold
    first = int(np.argmax(above)) * DSP.hop / FS
    assert above.any()
    assert 5.0 < first < RUN_S - 5.0  # after onset, well before failure
    assert above[-len(s) // 5 :].all()  # and stays above as the spall grows


@pytest.mark.parametrize(("seed", "load"), [(101, 0.5), (202, 0.9)])
def test_separate_healthy_run_stays_under_target(
    model: CalibrationResult, tmp_path: Path, seed: int, load: float
) -> None:
    x = waveform(RUN_S, seed=seed, load=load, shaft_hz=24.5)
    s = scores(model.out_dir, record(tmp_path / "h.npy", x), FS)
    assert (
        np.mean(s > model.manifest.threshold) <= model.manifest.calibration.target_false_alarm_rate
    )


def test_other_sample_rate_is_not_an_anomaly(model: CalibrationResult, tmp_path: Path) -> None:
    x = waveform(RUN_S, seed=303, decimate=2)  # the same kind of machine at 12.8 kHz
    s = scores(model.out_dir, record(tmp_path / "slow.npy", x), FS / 2)
    assert len(s) > 300
    assert (
        np.mean(s > model.manifest.threshold) <= model.manifest.calibration.target_false_alarm_rate
    )
    with pytest.raises(ConfigError, match="needs a sample rate above 10000"):
        scores(model.out_dir, record(tmp_path / "slower.npy", x[::2].copy()), FS / 4)


def test_int8_calibration_agrees_with_float(
    model: CalibrationResult, runs: Path, tmp_path: Path
) -> None:
    r = calibrate(
        sorted(runs.glob("healthy*.npy")),
        FS,
        tmp_path / "int8",
        base_dsp=DSP,
        model_id="pump-baseline",
        version="1",
        max_frequency_hz=5000.0,
        quantization="int8",
    )
    f32, i8 = load_scorer(model.out_dir), load_scorer(tmp_path / "int8")
    assert i8.runner.int8
    # healthy frames and frames of a growing fault, up to a few times the threshold
    fault = Fault("outer_race", onset_s=0.0, failure_s=10.0, max_level=0.5, growth_exponent=1.0)
    path = record(tmp_path / "fault.npy", waveform(10.0, seed=5, faults=(fault,)))
    names, feats = recording_features(path, FS, r.dsp, None, "vibration", "g")
    idx = i8.columns(names)
    assert idx is not None
    x = np.concatenate([*r.features, feats[:, idx]])
    a, b = f32.score(x), i8.score(x)
    sat = r.manifest.score.saturates_at
    assert sat is not None
    assert a.max() > 2 * r.manifest.threshold
    # the int8 model reads scores above its range (16x the threshold) as its top value
    assert np.corrcoef(np.minimum(a, sat), b)[0, 1] > 0.99
    assert np.mean((a > r.manifest.threshold) == (b > r.manifest.threshold)) > 0.99


def test_cli_calibrate_then_replay(runs: Path, tmp_path: Path) -> None:
    out = tmp_path / "m"
    cal = subprocess.run(
        [
            sys.executable, "-m", "gateway.cli", "models", "calibrate",
            *[a for p in sorted(runs.glob("healthy*.npy")) for a in ("--input", str(p))],
            "--sample-rate", str(FS), "--out", str(out), "--max-frequency", "5000",
        ],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert cal.returncode == 0, cal.stderr
    assert "learned from 1122 windows (374, 374, 374 per input)" in cal.stdout
    assert "held-out false-alarm rate" in cal.stdout
    assert "safety margin x1.5" in cal.stdout
    jl = tmp_path / "s.jsonl"
    rep = subprocess.run(
        [
            sys.executable, "-m", "gateway.cli", "replay", "--input",
            str(runs / "healthy0.npy"), "--sample-rate", str(FS), "--model", str(out),
            "--out", str(jl),
        ],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert rep.returncode == 0, rep.stderr
    lines = [json.loads(line) for line in jl.read_text().splitlines()]
    assert len(lines) == 374
    assert all(line["score"]["value"] >= 0 for line in lines)
    assert {line["score"]["model_version"] for line in lines} == {
        json.loads((out / "manifest.json").read_text())["version"]
    }
