"""A running gateway follows `pdm-gateway models promote/rollback` without a restart: simulated
machines on a real Modbus server -> collector -> DSP -> inference -> SQLite journal; every
vibration window is scored exactly once, by the old version before the swap and the new one
after."""

from __future__ import annotations

from pathlib import Path

from gateway.cli import main
from gateway.config import parse_config
from gateway.runtime.pipeline import Pipeline
from gateway.store.journal import Journal
from tests.conftest import Sim, plant_toml, wait_until
from tests.integration.test_slice import Frames
from tests.registry_data import version


async def test_cli_promote_and_rollback_reach_a_running_gateway(
    modbus_sim: Sim, port: int, tmp_path: Path
) -> None:
    toml = (
        plant_toml(port, tmp_path / "state").replace(
            "[dsp]\n", "[dsp]\nbands_hz = [[10, 100], [100, 1000]]\n"
        )
        + "\n[models]\nallow_unsigned = true\nwatch_interval_s = 0.05\n"
        + '[models.assets]\nm1 = "test-model"\nm2 = "test-model"\n'
    )
    cfg_path = tmp_path / "gw.toml"
    cfg_path.write_text(toml)
    cfg = parse_config(toml, base_dir=tmp_path)
    conf = ["--config", str(cfg_path)]
    for v in ("1", "2"):
        assert (
            main(["models", "install", str(version(tmp_path / "src", v, window=1024)), *conf]) == 0
        )
    frames = Frames()
    pipeline = Pipeline(cfg, on_frame=frames)
    assert pipeline.models is not None
    ctl = pipeline.models

    def active() -> str:
        return ctl.summary()["test-model"]["active"]  # type: ignore[index,no-any-return]

    def vib() -> int:
        return len(frames.of("m1_vib")) + len(frames.of("m2_vib"))

    await pipeline.start()
    try:
        await wait_until(lambda: vib() >= 20, frames.event)
        assert main(["models", "promote", "test-model", "2", *conf]) == 0
        await wait_until(lambda: active() == "2", ctl.swapped)
        mark = vib()
        await wait_until(lambda: vib() >= mark + 20, frames.event)
        assert main(["models", "rollback", "test-model", *conf]) == 0
        await wait_until(lambda: active() == "1", ctl.swapped)
        mark = vib()
        await wait_until(lambda: vib() >= mark + 20, frames.event)
    finally:
        assert await pipeline.stop()
    j = Journal(cfg.store_path())
    try:
        rows = j.read("check", 100_000)
    finally:
        j.close()
    window_ns = round(1024 / 5120 * 1e9)
    for ch in ("m1_vib", "m2_vib"):
        feats = [r.ts_ns + window_ns for r in rows if r.kind == "feature" and r.channel == ch]
        scores = [r for r in rows if r.kind == "score" and r.channel == ch]
        assert [s.ts_ns for s in scores] == feats  # every window once, in order
        assert not any(s.payload["shadow"] for s in scores)
        runs: list[str] = []
        for s in scores:
            if not runs or runs[-1] != s.model_version:
                runs.append(s.model_version)
        assert runs == ["1", "2", "1"]
    status = pipeline.status()["model_lifecycle"]
    assert status["rollbacks"] == 0  # type: ignore[index]
