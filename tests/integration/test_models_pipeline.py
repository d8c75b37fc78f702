"""A commissioned model in the live pipeline: simulators on a real Modbus server -> collector ->
DSP -> inference -> SQLite journal, with every vibration window scored exactly once, whether
the DSP stage scores its batches itself (``models.inline``, the default) or an inference stage
of its own does."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gateway.config import parse_config
from gateway.dsp.config import DspConfig
from gateway.inference.calibrate import calibrate
from gateway.runtime.pipeline import Pipeline
from gateway.store.journal import Journal
from simulators.machine import Machine
from tests.conftest import Sim, plant_toml, small_spec, wait_until
from tests.integration.test_slice import Frames


def healthy_recordings(d: Path) -> list[Path]:
    out = []
    for seed in (31, 32, 33):
        m = Machine(small_spec("h"), seed=seed)
        x = np.concatenate([m.advance(t).blocks[0].samples for t in np.arange(0.5, 40.25, 0.5)])
        np.save(d / f"h{seed}.npy", x)
        out.append(d / f"h{seed}.npy")
    return out


@pytest.mark.parametrize("inline", [True, False])
async def test_pipeline_scores_every_window_once(
    modbus_sim: Sim, port: int, tmp_path: Path, inline: bool
) -> None:
    model_dir = tmp_path / "state" / "models" / "small-pump"
    r = calibrate(
        healthy_recordings(tmp_path),
        5120.0,
        model_dir,
        base_dsp=DspConfig(window=1024, hop=512),
        model_id="small-pump",
        version="7",
    )
    bands = ", ".join(f"[{lo}, {hi}]" for lo, hi in r.manifest.dsp.bands_hz)
    toml = (
        plant_toml(port, tmp_path / "state").replace("[dsp]\n", f"[dsp]\nbands_hz = [{bands}]\n")
        + f"\n[models]\ninline = {str(inline).lower()}\n"
        + '\n[models.assets]\nm1 = "small-pump"\nm2 = "small-pump"\n'
    )
    cfg = parse_config(toml, base_dir=tmp_path)
    frames = Frames()
    pipeline = Pipeline(cfg, on_frame=frames)
    await pipeline.start()
    try:
        await wait_until(
            lambda: len(frames.of("m1_vib")) >= 30 and len(frames.of("m2_vib")) >= 30,
            frames.event,
        )
    finally:
        assert await pipeline.stop()
    assert (pipeline.frames is None) == inline  # (inline: no frames queue)
    assert pipeline.scored.dropped == 0
    assert pipeline.frames is None or pipeline.frames.dropped == 0
    assert pipeline.inference is not None
    assert pipeline.inference.batches > 0
    j = Journal(cfg.store_path())
    try:
        rows = j.read("check", 100_000)
    finally:
        j.close()
    scores = [row for row in rows if row.kind == "score"]
    vib = [row for row in rows if row.kind == "feature" and row.channel.endswith("_vib")]
    assert len(vib) == len(frames.of("m1_vib")) + len(frames.of("m2_vib"))
    # each vibration window scored exactly once, temperature frames not at all
    assert sorted((s.channel, s.ts_ns) for s in scores) == sorted(
        (f.channel, f.ts_ns + round(1024 / 5120 * 1e9)) for f in vib
    )
    assert {(s.payload["model_id"], s.model_version) for s in scores} == {("small-pump", "7")}
    thr = r.manifest.threshold
    m1 = [s.payload["score"] for s in scores if s.asset == "m1"]
    m2 = [s.payload["score"] for s in scores if s.asset == "m2"]
    assert sum(v > thr for v in m1) <= 1  # the healthy machine: at most one outlier window
    assert all(v > thr for v in m2[-10:])  # the imbalance grown within a second: alarming
    assert pipeline.status()["inference"]["scored"] == len(scores)  # type: ignore[index]
