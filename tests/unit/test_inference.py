"""LiteRT runtime, flatbuffer writer, manifest checks and the inference stage."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest

from gateway.config.schema import GatewayConfig
from gateway.core.errors import ConfigError
from gateway.core.records import FeatureFrame, Quality, Score
from gateway.dsp.features import SCHEMA_VERSION
from gateway.inference import baseline as B
from gateway.inference.flatbuffer import build_residual_model, quantize_int8
from gateway.inference.manifest import (
    Calibration,
    DspRequirements,
    Manifest,
    Normalisation,
    ScoreDef,
    sha256_of,
    write_model,
)
from gateway.inference.runtime import ModelRunner
from gateway.inference.scorer import load_scorer
from gateway.inference.stage import InferenceStage
from gateway.runtime.pipeline import Pipeline
from gateway.runtime.queues import BoundedQueue

FEATURES = ["band_10_100hz_ms", "band_100_1000hz_ms", "velocity_rms", "displacement_pp"]


def healthy(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = np.array([1e-3, 5e-4, 1.2, 8.0])
    common = rng.normal(0, 0.1, (n, 1))
    return base * 10 ** (common + rng.normal(0, 0.05, (n, 4)))


def make_model(tmp: Path, *, int8: bool = False, **changes: object) -> Path:
    x = healthy(400)
    bl = B.fit(x, np.ones(4, dtype=bool))
    content = build_residual_model(bl.weight)
    if int8:
        content = quantize_int8(content, [bl.z(x) * np.float32(a) for a in (1, 2, 3)])
    fields: dict[str, object] = {
        "model_id": "test-model",
        "version": "1.0.0",
        "schema_version": SCHEMA_VERSION,
        "features": FEATURES,
        "normalisation": Normalisation(
            transform=["log10"] * 4, mean=bl.mean.tolist(), std=bl.std.tolist()
        ),
        "score": ScoreDef(definition="test", components=bl.components),
        "threshold": 3.0,
        "calibration": Calibration(
            method="test",
            target_false_alarm_rate=0.01,
            estimated_false_alarm_rate=0.0,
            margin=1.5,
            holdout_segments=5,
            windows=400,
        ),
        "dsp": DspRequirements(
            bands_hz=[(10.0, 100.0), (100.0, 1000.0)], window_s=4096 / 5120, max_frequency_hz=1000
        ),
        "quantization": "int8" if int8 else "float32",
        "sha256": sha256_of(content),
    }
    fields.update(changes)
    d = tmp / ("int8" if int8 else "f32")
    write_model(d, Manifest.model_validate(fields), content)
    return d


def test_flatbuffer_float_model_equals_numpy_at_every_batch_size() -> None:
    rng = np.random.default_rng(1)
    w = rng.normal(0, 0.4, (7, 5)).astype(np.float32)
    runner = ModelRunner(build_residual_model(w), threads=2, max_batch=16)
    for n in (1, 3, 16, 40):  # 40: split into batches of 16, the last one padded
        z = rng.normal(size=(n, 5)).astype(np.float32)
        want = np.mean((z.astype(np.float64) @ w.T.astype(np.float64)) ** 2, axis=1)
        np.testing.assert_allclose(runner.run(z), want, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"\(n, 5\)"):
        runner.run(np.zeros((2, 4), np.float32))


def test_int8_model_is_quantised_and_agrees_with_float(tmp_path: Path) -> None:
    f32, i8 = load_scorer(make_model(tmp_path)), load_scorer(make_model(tmp_path, int8=True))
    assert not f32.runner.int8
    assert i8.runner.int8
    assert i8.runner.in_scale > 0
    assert i8.runner.out_scale > 0
    x = np.vstack((healthy(300, seed=5), healthy(30, seed=6) * [3.0, 1, 1, 1]))
    a, b = f32.score(x), i8.score(x)
    assert np.corrcoef(a, b)[0, 1] > 0.99


def config(tmp: Path, model_dir: Path, fs: float = 5120.0, **dsp: object) -> GatewayConfig:
    return GatewayConfig.model_validate(
        {
            "gateway": {"state_dir": str(tmp)},
            "channels": {"vib": {"kind": "vibration", "sample_rate_hz": fs}},
            "assets": {"pump": {"channels": ["vib"]}},
            "dsp": {"bands_hz": [[10, 100], [100, 1000]], **dsp},
            "models": {"assets": {"pump": "test-model"}, "paths": {"test-model": str(model_dir)}},
        }
    )


def test_pipeline_loads_a_matching_model(tmp_path: Path) -> None:
    p = Pipeline(config(tmp_path, make_model(tmp_path)))
    assert p.inference is not None
    assert p.inference.status()["models"] == {
        "pump": {"active": {"id": "test-model", "version": "1.0.0", "quantization": "float32"}}
    }


def test_wrong_schema_version_is_refused_at_start(tmp_path: Path) -> None:
    d = make_model(tmp_path, schema_version="pdm-features/1")
    with pytest.raises(ConfigError) as e:
        Pipeline(config(tmp_path, d))
    assert e.value.errors[0][0] == "models.assets.pump"
    assert "'pdm-features/1'" in str(e.value)
    assert repr(SCHEMA_VERSION) in str(e.value)


def test_missing_feature_names_are_refused_at_start(tmp_path: Path) -> None:
    d = make_model(tmp_path)
    cfg = config(tmp_path, d)
    cfg = cfg.model_copy(update={"dsp": cfg.dsp.model_copy(update={"bands_hz": [(10.0, 90.0)]})})
    with pytest.raises(ConfigError) as e:
        Pipeline(cfg)
    msg = str(e.value)
    assert "band_10_100hz_ms, band_100_1000hz_ms" in msg
    assert "does not produce" in msg


def test_model_above_nyquist_or_other_window_is_refused(tmp_path: Path) -> None:
    d = make_model(tmp_path)
    with pytest.raises(ConfigError, match="above its Nyquist frequency 900"):
        Pipeline(config(tmp_path, d, fs=1800.0, velocity_band_hz=[10, 800]))
    with pytest.raises(ConfigError, match=r"window lasts 0\.4 s.*dsp\.window = 4096"):
        Pipeline(config(tmp_path, d, window=2048, hop=1024))


def test_tampered_model_is_refused(tmp_path: Path) -> None:
    d = make_model(tmp_path)
    data = bytearray((d / "model.tflite").read_bytes())
    data[-1] ^= 1
    (d / "model.tflite").write_bytes(bytes(data))
    with pytest.raises(ConfigError, match=r"sha256 .* does not match"):
        Pipeline(config(tmp_path, d))


def test_bad_manifest_names_the_field(tmp_path: Path) -> None:
    d = make_model(tmp_path)
    m = json.loads((d / "manifest.json").read_text())
    m["normalisation"]["std"][0] = 0.0
    (d / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ConfigError, match="std entries must be positive"):
        Pipeline(config(tmp_path, d))


def frame(
    values: list[float], channel: str = "vib", asset: str = "pump", **kw: object
) -> FeatureFrame:
    names = ("rms", *FEATURES)
    return FeatureFrame(
        asset,
        channel,
        0,
        1000,
        0,
        SCHEMA_VERSION,
        names,
        ("g",) * 5,
        np.array([0.1, *values]),
        **kw,  # type: ignore[arg-type]
    )


async def test_stage_forwards_every_frame_and_scores_each_once(tmp_path: Path) -> None:
    scorer = load_scorer(make_model(tmp_path))
    inp: BoundedQueue[FeatureFrame] = BoundedQueue("frames", 1000)
    out: BoundedQueue[FeatureFrame | Score] = BoundedQueue("scored", 1000)
    stage = InferenceStage({"pump": scorer}, inp, out)
    rows = healthy(150, seed=9)
    frames = [frame(list(r)) for r in rows]
    frames.append(frame([np.nan, 1e-4, 1.0, 8.0]))  # a missing feature: forwarded, unscored
    frames.append(frame(list(rows[0]), quality=Quality.BAD))
    frames.append(frame(list(rows[0]), asset="fan"))  # an asset without a model
    task = asyncio.create_task(stage.run())
    for f in frames:
        await inp.put(f)
    await inp.close()
    await task
    items = [await out.get() for _ in range(len(out))]
    got_frames = [i for i in items if isinstance(i, FeatureFrame)]
    scores = [i for i in items if isinstance(i, Score)]
    assert got_frames == frames
    assert len(scores) == 150
    assert stage.status()["unscored"] == 2
    for i, item in enumerate(items):  # each score right after its frame
        if isinstance(item, Score):
            prev = items[i - 1]
            assert isinstance(prev, FeatureFrame)
            assert prev.channel == item.channel
    s0 = scores[0]
    assert (s0.model_id, s0.model_version, s0.channel, s0.threshold) == (
        "test-model",
        "1.0.0",
        "vib",
        3.0,
    )
    np.testing.assert_allclose([s.score for s in scores], scorer.score(rows), rtol=1e-6)


async def test_model_emitting_nan_is_counted_and_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    good = make_model(tmp_path)
    bad_dir = tmp_path / "bad"
    m = json.loads((good / "manifest.json").read_text())
    w = np.full((5, 4), np.nan, dtype=np.float32)  # a broken export: every score NaN
    content = build_residual_model(w)
    m["sha256"] = sha256_of(content)
    write_model(bad_dir, Manifest.model_validate(m), content)
    inp: BoundedQueue[FeatureFrame] = BoundedQueue("frames", 100)
    out: BoundedQueue[FeatureFrame | Score] = BoundedQueue("scored", 100)
    stage = InferenceStage({"pump": load_scorer(bad_dir)}, inp, out)
    frames = [frame(list(r)) for r in healthy(10, seed=2)]
    task = asyncio.create_task(stage.run())
    for f in frames:
        await inp.put(f)
    await inp.close()
    await task
    items = [await out.get() for _ in range(len(out))]
    assert items == frames  # forwarded, none scored
    status = stage.status()
    assert status["invalid_scores"] == 10
    assert status["unscored"] == 10
    failing = [r for r in caplog.records if "non-finite scores" in r.getMessage()]
    assert len(failing) == 1


def test_check_config_refuses_a_mismatched_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from gateway.cli import main

    d = make_model(tmp_path, schema_version="pdm-features/1")
    (tmp_path / "state").mkdir()
    toml = f"""
[gateway]
state_dir = "{(tmp_path / "state").as_posix()}"
[dsp]
bands_hz = [[10, 100], [100, 1000]]
[channels.vib]
kind = "vibration"
sample_rate_hz = 5120
[assets.pump]
channels = ["vib"]
[devices.modbus.plc]
host = "127.0.0.1"
port = 5020
[[devices.modbus.plc.waveforms]]
channel = "vib"
ring_address = 0
ring_length = 4096
sequence_address = 5000
period_s = 0.1
[models.assets]
pump = "test-model"
[models.paths]
test-model = "{d.as_posix()}"
"""
    path = tmp_path / "g.toml"
    path.write_text(toml)
    assert main(["check-config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("models.assets.pump: channel 'vib': model test-model 1.0.0 needs")
    assert "'pdm-features/1'" in err
