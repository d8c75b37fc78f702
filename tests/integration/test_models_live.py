"""``models calibrate --from-live``: learn from the features a running gateway stored, then run
the gateway with the model it wrote."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.cli import main
from gateway.config import parse_config
from gateway.inference.manifest import read_manifest
from gateway.runtime.pipeline import Pipeline
from tests.conftest import Sim, plant_toml, wait_until
from tests.integration.test_slice import Frames


async def test_calibrate_from_live_store(
    modbus_sim: Sim, port: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    toml = plant_toml(port, tmp_path / "state", units=1, window=1024, hop=256)
    path = tmp_path / "gateway.toml"
    path.write_text(toml)
    cfg = parse_config(toml, base_dir=tmp_path)
    frames = Frames()
    pipeline = Pipeline(cfg, on_frame=frames)
    await pipeline.start()
    try:
        await wait_until(lambda: len(frames.of("m1_vib")) >= 130, frames.event)
    finally:
        assert await pipeline.stop()
    span_s = (frames.of("m1_vib")[-1].start_ts_ns - frames.of("m1_vib")[0].start_ts_ns) / 1e9

    out = tmp_path / "state" / "models" / "m1-live"
    args = ["models", "calibrate", "--from-live", "--config", str(path), "--out", str(out)]
    assert main([*args, "--duration", str(span_s + 60)]) == 2
    assert "fewer than" in capsys.readouterr().err
    assert main([*args, "--duration", str(span_s - 0.5), "--model-id", "m1-live"]) == 0
    printed = capsys.readouterr().out
    assert "learned from" in printed
    assert "m1_vib" in printed
    assert "held-out false-alarm rate" in printed
    m = read_manifest(out)
    assert m.calibration.holdout_segments == 5
    assert 100 <= m.calibration.windows <= len(frames.of("m1_vib"))
    assert m.dsp.max_frequency_hz < 5120 / 2

    # the gateway accepts the model it learned: same features, window and rate
    live = parse_config(toml + '\n[models.assets]\nm1 = "m1-live"\n', base_dir=tmp_path)
    assert Pipeline(live).inference is not None
    assert main(["models", "calibrate", "--from-live", "--out", str(out)]) == 2
