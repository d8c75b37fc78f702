"""The shipped models (``models/``, rebuilt by ``make models``) on fresh simulator runs: they load
and pass the start-up check against a matching config, int8 agrees with float32, every fault
scenario of their machine class alarms before its simulated failure, and unseen healthy runs
stay under the threshold at the calibrated rate. int8 scores are compared with the float scores
clipped to the int8 model's range (``score.saturates_at``), the score it is defined to output."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gateway.config.schema import GatewayConfig
from gateway.inference.features import dsp_for
from gateway.inference.scorer import Scorer, load_scorer
from gateway.runtime.pipeline import Pipeline
from models.train import CLASSES, FS, MachineClass, alarm_times, features, healthy_machine
from simulators.scenario import load_scenario

MODELS = Path(__file__).resolve().parents[2] / "models"
REAL_S = 24.0  # real seconds of signal for a whole accelerated run to failure


def scorers(name: str) -> tuple[Scorer, Scorer]:
    return load_scorer(MODELS / name), load_scorer(MODELS / f"{name}-int8")


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.name)
def test_shipped_model_loads_in_a_matching_pipeline(cls: MachineClass, tmp_path: Path) -> None:
    f32, i8 = scorers(cls.name)
    assert (f32.manifest.quantization, i8.manifest.quantization) == ("float32", "int8")
    assert i8.runner.int8
    assert f32.manifest.version == i8.manifest.version
    dsp = dsp_for(f32.manifest.dsp, FS)
    cfg = GatewayConfig.model_validate(
        {
            "gateway": {"state_dir": str(tmp_path)},
            "channels": {"v": {"kind": "vibration", "sample_rate_hz": FS}},
            "assets": {"a": {"channels": ["v"]}},
            "dsp": dsp.model_dump(),
            "models": {"assets": {"a": cls.name}, "paths": {cls.name: str(MODELS / cls.name)}},
        }
    )
    assert Pipeline(cfg).inference is not None


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.name)
def test_faults_alarm_before_failure_and_int8_agrees(cls: MachineClass) -> None:
    f32, i8 = scorers(cls.name)
    dsp = dsp_for(f32.manifest.dsp, FS)
    a_all, b_all = [], []
    for name in cls.scenarios:
        sc = load_scenario(name)
        fault = sc.faults[0].to_fault()
        over = {} if sc.machine.shaft_hz else {"shaft_hz": cls.shaft_hz}
        m = sc.machines(
            1,
            seed=9,
            speed=fault.failure_s / REAL_S,
            acoustic_rate_hz=0.0,
            vibration_channels=1,
            **over,
        )[0]
        names, rows, ends = features(m, REAL_S, dsp)
        idx = f32.columns(names)
        assert idx is not None
        x, t = rows[0][:, idx], ends[0]
        s = f32.score(x)
        edges = alarm_times(s, f32.threshold)
        assert len(edges) > 0, name
        assert fault.onset_s <= t[edges[0]] < fault.failure_s, name
        a_all.append(s)
        b_all.append(i8.score(x))
    # the int8 model reads scores above its range (16x the threshold) as its top value
    a, b = np.concatenate(a_all), np.concatenate(b_all)
    sat = i8.manifest.score.saturates_at
    assert sat is not None
    assert sat > 10 * i8.threshold
    assert np.corrcoef(np.minimum(a, sat), b)[0, 1] > 0.99
    inside = a < sat
    assert np.corrcoef(a[inside], b[inside])[0, 1] > 0.99
    assert np.mean((a > f32.threshold) == (b > i8.threshold)) > 0.99


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.name)
def test_unseen_healthy_runs_stay_under_threshold(cls: MachineClass) -> None:
    f32, i8 = scorers(cls.name)
    dsp = dsp_for(f32.manifest.dsp, FS)
    target = f32.manifest.calibration.target_false_alarm_rate
    for seed, load, speed in ((7001, 0.45, 0.985), (7002, 0.95, 1.015)):
        names, rows, _ = features(healthy_machine(cls, seed, load, speed), 20.0, dsp)
        idx = f32.columns(names)
        assert idx is not None
        for r in rows:
            for sc in (f32, i8):
                s = sc.score(r[:, idx])
                assert np.mean(s > sc.threshold) <= target
                assert len(alarm_times(s, sc.threshold)) == 0
